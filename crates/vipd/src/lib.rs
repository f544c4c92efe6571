//! vipd owns virtual addresses and neighbour announcements on this host:
//! ACTIVE means the VIPs are on their interfaces and announced (gratuitous
//! ARP / unsolicited NA); STANDBY means no VIP here (or real-server mode).
//! It never decides a role (hbd does) and never touches the IPVS table
//! (ipvsd does).
//!
//! Today vipd serves the resource contract (`tandem.resource.v1`) with
//! transitions that only record state: its host-side work is issue #7.

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{BareConfig, Daemon, Services};
use tandem_resource::{ResourceMachine, ResourceService, StateOnly};
use tokio_util::sync::CancellationToken;

/// The vipd daemon.
pub struct Vipd {
    machine: ResourceMachine<StateOnly>,
}

impl Daemon for Vipd {
    const NAME: &'static str = "vipd";
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
