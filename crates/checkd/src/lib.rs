//! checkd probes real servers and reports health transitions to ipvsd; it
//! probes in STANDBY and ACTIVE alike so the standby's view is current at
//! takeover. It never writes the IPVS table itself (ipvsd does).
//!
//! Today checkd serves the resource contract (`tandem.resource.v1`) with
//! transitions that only record state: its host-side work is issue #6.

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{BareConfig, Daemon, Services};
use tandem_resource::{ResourceMachine, ResourceService, StateOnly};
use tokio_util::sync::CancellationToken;

/// The checkd daemon.
pub struct Checkd {
    machine: ResourceMachine<StateOnly>,
}

impl Daemon for Checkd {
    const NAME: &'static str = "checkd";
    type Config = BareConfig;

    fn build(_config: &BareConfig, _registry: &mut Registry) -> Result<Self, BoxError> {
        Ok(Self {
            machine: ResourceMachine::new(Self::NAME, StateOnly),
        })
    }

    fn services(&self, shutdown: &CancellationToken) -> Services {
        let resource = ResourceService::new(self.machine.clone(), shutdown.clone());
        Services::new().with(resource.into_server())
    }

    async fn reload(&self, _config: BareConfig) -> Result<(), BoxError> {
        Ok(())
    }
}
