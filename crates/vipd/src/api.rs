//! [`VipService`]: `tandem.vip.v1.Vip`: the configured addresses with
//! where they belong and where they are, and announcements on demand.

use std::net::IpAddr;

use tandem_proto::vip::v1 as pb;
use tandem_proto::vip::v1::vip_server::{Vip, VipServer};
use tonic::{Request, Response, Status};

use crate::control::{Control, ControlError};
use crate::layout::{Placement, Wanted, director_addresses, layout, real_server_addresses};

/// The gRPC face of [`Control`].
pub struct VipService {
    control: Control,
}

impl VipService {
    /// A service over `control`.
    pub fn new(control: Control) -> Self {
        Self { control }
    }

    /// The tonic server.
    pub fn into_server(self) -> VipServer<Self> {
        VipServer::new(self)
    }
}

fn unavailable(e: &ControlError) -> Status {
    Status::unavailable(e.to_string())
}

#[tonic::async_trait]
impl Vip for VipService {
    async fn list_addresses(
        &self,
        _request: Request<pb::ListAddressesRequest>,
    ) -> Result<Response<pb::ListAddressesResponse>, Status> {
        let (config, state, snapshot) = self.control.view().await.map_err(|e| unavailable(&e))?;
        let wanted_now = layout(&config, state).addresses;
        let mut all = director_addresses(&config);
        all.extend(real_server_addresses(&config));
        let addresses = all
            .iter()
            .map(|w: &Wanted| {
                let present = snapshot
                    .link(&w.interface)
                    .is_some_and(|l| snapshot.has(l.index, w.cidr));
                let stats = self.control.announcer().stats(w.cidr.addr);
                pb::Address {
                    cidr: w.cidr.to_string(),
                    interface: w.interface.clone(),
                    label: w.label.clone().unwrap_or_default(),
                    placement: match w.placement {
                        Placement::Director => pb::Placement::Director,
                        Placement::RealServer => pb::Placement::RealServer,
                    }
                    .into(),
                    wanted: wanted_now.contains(w),
                    present,
                    announcements: if w.placement == Placement::Director {
                        stats.frames
                    } else {
                        0
                    },
                    last_announced_unix_ms: if w.placement == Placement::Director {
                        stats.last_unix_ms
                    } else {
                        0
                    },
                }
            })
            .collect();
        Ok(Response::new(pb::ListAddressesResponse { addresses }))
    }

    async fn announce(
        &self,
        request: Request<pb::AnnounceRequest>,
    ) -> Result<Response<pb::AnnounceResponse>, Status> {
        let mut only = Vec::new();
        for (i, text) in request.into_inner().addresses.iter().enumerate() {
            let addr: IpAddr = text.parse().map_err(|_| {
                Status::invalid_argument(format!("addresses[{i}]: '{text}' is not an IP address"))
            })?;
            only.push(addr);
        }
        let (config, _) = self.control.settings().await;
        if let Some(unknown) = only
            .iter()
            .find(|a| !config.addresses.iter().any(|v| v.address.addr == **a))
        {
            return Err(Status::not_found(format!(
                "{unknown} is not a director VIP in vipd's config"
            )));
        }
        match self.control.announce_now(only).await {
            Ok(frames) => Ok(Response::new(pb::AnnounceResponse { frames })),
            Err(e @ ControlError::NotActive(_)) => Err(Status::failed_precondition(e.to_string())),
            Err(e) => Err(unavailable(&e)),
        }
    }
}
