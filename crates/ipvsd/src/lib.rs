//! ipvsd owns the desired IPVS service table and reconciles the kernel to
//! it by diff, never a flush: ACTIVE means table applied and connection-sync
//! master; STANDBY means table applied and sync backup. It never decides a
//! role (hbd does) and never probes real servers (checkd does).
//!
//! Today ipvsd serves the resource contract (`tandem.resource.v1`) with
//! transitions that only record state: its host-side work is issue #5.

pub mod backend;
pub mod ipvs;
pub mod plan;
pub mod reconcile;
pub mod rules;
pub mod table;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{BareConfig, Daemon, Services};
use tandem_resource::{ResourceMachine, ResourceService, StateOnly};
use tokio_util::sync::CancellationToken;

/// The ipvsd daemon.
pub struct Ipvsd {
    machine: ResourceMachine<StateOnly>,
}

impl Daemon for Ipvsd {
    const NAME: &'static str = "ipvsd";
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
