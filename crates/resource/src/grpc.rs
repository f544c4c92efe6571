//! [`ResourceService`]: serves a [`ResourceMachine`] as `tandem.resource.v1.Resource`.
//! The one place where resource errors become `tonic::Status` codes.

use std::pin::Pin;

use tandem_proto::resource::v1 as pb;
use tandem_proto::resource::v1::resource_server::{Resource, ResourceServer};
use tokio_stream::{Stream, StreamExt, wrappers::WatchStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::machine::{ResourceMachine, TransitionError};
use crate::state::{ResourceHook, State};

/// The gRPC face of a [`ResourceMachine`].
pub struct ResourceService<H> {
    machine: ResourceMachine<H>,
    shutdown: CancellationToken,
}

impl<H: ResourceHook> ResourceService<H> {
    /// A service over `machine`; `WatchStatus` streams end (with status OK)
    /// when `shutdown` is cancelled, so a stopping daemon does not wait on them.
    pub fn new(machine: ResourceMachine<H>, shutdown: CancellationToken) -> Self {
        Self { machine, shutdown }
    }

    /// The tonic server wrapper, ready to add to a router.
    pub fn into_server(self) -> ResourceServer<Self> {
        ResourceServer::new(self)
    }
}

fn to_status(err: TransitionError) -> Status {
    match &err {
        TransitionError::StaleEpoch { .. } => Status::failed_precondition(err.to_string()),
        TransitionError::HookFailed { .. } => Status::aborted(err.to_string()),
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::ResourceStatus, Status>> + Send>>;

#[tonic::async_trait]
impl<H: ResourceHook> Resource for ResourceService<H> {
    async fn transition(
        &self,
        request: Request<pb::TransitionRequest>,
    ) -> Result<Response<pb::TransitionResponse>, Status> {
        let req = request.into_inner();
        let target = State::from_wire(req.target).ok_or_else(|| {
            Status::invalid_argument(format!(
                "target: {} is not a state to move to (STOPPED, STANDBY or ACTIVE)",
                req.target
            ))
        })?;
        let outcome = self
            .machine
            .transition(target, req.epoch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::TransitionResponse {
            status: Some(outcome.status.to_wire()),
            changed: outcome.changed,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::ResourceStatus>, Status> {
        Ok(Response::new(self.machine.status().to_wire()))
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        _request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let updates = WatchStream::new(self.machine.subscribe()).map(|s| Ok(s.to_wire()));
        let stream =
            futures_util::StreamExt::take_until(updates, self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HookError;

    struct Refuses;

    impl ResourceHook for Refuses {
        async fn enter(&self, _from: State, to: State) -> Result<(), HookError> {
            match to {
                State::Active => Err(HookError("no route to 203.0.113.1".into())),
                _ => Ok(()),
            }
        }
    }

    fn service() -> ResourceService<Refuses> {
        ResourceService::new(
            ResourceMachine::new("svc", Refuses),
            CancellationToken::new(),
        )
    }

    fn req(target: pb::State, epoch: u64) -> Request<pb::TransitionRequest> {
        Request::new(pb::TransitionRequest {
            target: target.into(),
            epoch,
        })
    }

    #[tokio::test]
    async fn errors_map_to_the_contract_codes() {
        let svc = service();
        let unspecified = svc
            .transition(req(pb::State::Unspecified, 1))
            .await
            .unwrap_err();
        assert_eq!(unspecified.code(), tonic::Code::InvalidArgument);
        assert!(unspecified.message().starts_with("target:"));

        svc.transition(req(pb::State::Standby, 4)).await.unwrap();
        let stale = svc
            .transition(req(pb::State::Stopped, 3))
            .await
            .unwrap_err();
        assert_eq!(stale.code(), tonic::Code::FailedPrecondition);

        let failed = svc.transition(req(pb::State::Active, 4)).await.unwrap_err();
        assert_eq!(failed.code(), tonic::Code::Aborted);
        assert!(failed.message().contains("no route to 203.0.113.1"));

        let status = svc
            .get_status(Request::new(pb::GetStatusRequest {}))
            .await
            .unwrap();
        let status = status.into_inner();
        assert_eq!(status.state(), pb::State::Standby);
        assert_eq!(status.epoch, 4);
    }

    #[tokio::test]
    async fn watch_starts_with_the_current_status() {
        let svc = service();
        svc.transition(req(pb::State::Standby, 1)).await.unwrap();
        let mut stream = svc
            .watch_status(Request::new(pb::WatchStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.state(), pb::State::Standby);
    }

    #[tokio::test]
    async fn watch_ends_when_the_daemon_shuts_down() {
        let shutdown = CancellationToken::new();
        let svc = ResourceService::new(ResourceMachine::new("svc", Refuses), shutdown.clone());
        let mut stream = svc
            .watch_status(Request::new(pb::WatchStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(stream.next().await.is_some());
        shutdown.cancel();
        assert!(stream.next().await.is_none());
    }
}
