//! hbd owns this node's role: it is the only daemon that decides ACTIVE or
//! STANDBY, from heartbeats on every link, and drives the resource group
//! (vipd, ipvsd, checkd, …) through `tandem.resource.v1` in order. It never
//! touches addresses or the IPVS table itself.
//!
//! Today hbd serves only gRPC health and reflection: membership, failover
//! and the resource group are issue #8.

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{BareConfig, Daemon, Services};
use tokio_util::sync::CancellationToken;

/// The hbd daemon.
pub struct Hbd;

impl Daemon for Hbd {
    const NAME: &'static str = "hbd";
    type Config = BareConfig;

    fn build(_config: &BareConfig, _registry: &mut Registry) -> Result<Self, BoxError> {
        Ok(Self)
    }

    fn services(&self, _shutdown: &CancellationToken) -> Services {
        Services::new()
    }

    async fn reload(&self, _config: BareConfig) -> Result<(), BoxError> {
        Ok(())
    }
}
