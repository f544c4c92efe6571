//! [`MembershipService`]: `tandem.hb.v1.Membership`: the cluster view
//! (cl_status), operator standby and takeover (hb_standby, hb_takeover)
//! and the event stream.

use std::pin::Pin;

use tandem_proto::hb::v1 as pb;
use tandem_proto::hb::v1::membership_server::{Membership, MembershipServer};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::node::{Gone, Handle, Request as NodeRequest};

/// The gRPC face of the node.
pub struct MembershipService {
    node: Handle,
    shutdown: CancellationToken,
}

impl MembershipService {
    /// A service over `node`; event streams end when `shutdown` is cancelled.
    pub fn new(node: Handle, shutdown: CancellationToken) -> Self {
        Self { node, shutdown }
    }

    /// The tonic server.
    pub fn into_server(self) -> MembershipServer<Self> {
        MembershipServer::new(self)
    }

    async fn request(&self, request: NodeRequest) -> Result<Response<pb::Cluster>, Status> {
        self.node
            .request(request)
            .await
            .map(Response::new)
            .map_err(|Gone| Status::unavailable("hbd is shutting down"))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn get_cluster(
        &self,
        _request: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        Ok(Response::new(self.node.cluster()))
    }

    async fn standby(
        &self,
        _request: Request<pb::StandbyRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        self.request(NodeRequest::Standby).await
    }

    async fn takeover(
        &self,
        _request: Request<pb::TakeoverRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        self.request(NodeRequest::Takeover).await
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let events = BroadcastStream::new(self.node.subscribe()).map(|item| match item {
            Ok(event) => Ok(event),
            Err(BroadcastStreamRecvError::Lagged(missed)) => Ok(pb::Event {
                kind: pb::EventKind::Lagged.into(),
                detail: format!("missed {missed} events"),
                ..pb::Event::default()
            }),
        });
        let events =
            futures_util::StreamExt::take_until(events, self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(events)))
    }
}
