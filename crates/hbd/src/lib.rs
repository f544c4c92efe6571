//! hbd owns this node's role: it is the only daemon that decides ACTIVE or
//! STANDBY, from heartbeats on every link, and drives the resource group
//! (vipd, ipvsd, checkd, …) through `tandem.resource.v1` in order. It never
//! touches addresses or the IPVS table itself.
//!
//! The parts: the config ([`config`]) and key file ([`keys`]); heartbeats
//! on the wire ([`wire`]) and in serial frames ([`serial`]); who should own
//! the group ([`ownership`]) and the steppable membership state machine
//! ([`membership`]).

pub mod config;
pub mod keys;
pub mod membership;
pub mod ownership;
pub mod serial;
pub mod wire;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{Daemon, Services};
use tokio_util::sync::CancellationToken;

use crate::config::HbdConfig;

/// The hbd daemon.
pub struct Hbd;

impl Daemon for Hbd {
    const NAME: &'static str = "hbd";
    type Config = HbdConfig;

    fn build(_config: &HbdConfig, _registry: &mut Registry) -> Result<Self, BoxError> {
        Ok(Self)
    }

    fn services(&self, _shutdown: &CancellationToken) -> Services {
        Services::new()
    }

    async fn reload(&self, _config: HbdConfig) -> Result<(), BoxError> {
        Ok(())
    }
}
