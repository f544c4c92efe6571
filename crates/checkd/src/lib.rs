//! checkd probes real servers and reports health transitions to ipvsd. It
//! learns its targets from ipvsd's table (`Watch`), probes each real with
//! the check spec of its service (or its own), turns results into a
//! verdict with rise and fall, and reports changes (`ReportHealth`). It
//! probes whatever its resource state, so a standby's view is current at
//! takeover; it never writes the IPVS table itself (ipvsd does).
//!
//! The parts: targets and their probe plans ([`target`]); the probes
//! ([`probe`], with replies matched by [`expect`]); rise and fall
//! ([`verdict`]); the probe loops and their results ([`engine`]); the link
//! to ipvsd ([`link`]); the maintenance directory ([`maintenance`]);
//! freed memory given back after bursts ([`memory`]);
//! `tandem.check.v1` ([`api`]); metrics ([`metrics`]); the config
//! ([`config`]).

pub mod api;
pub mod config;
pub mod engine;
pub mod expect;
pub mod link;
pub mod maintenance;
pub mod memory;
pub mod metrics;
pub mod probe;
pub mod target;
pub mod verdict;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{Daemon, Services};
use tandem_resource::{ResourceMachine, ResourceService, StateOnly};
use tokio_util::sync::CancellationToken;

use crate::api::CheckService;
use crate::config::CheckdConfig;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::probe::Prober;

/// The checkd daemon.
pub struct Checkd {
    machine: ResourceMachine<StateOnly>,
    engine: Engine,
}

impl Daemon for Checkd {
    const NAME: &'static str = "checkd";
    type Config = CheckdConfig;

    fn build(config: &CheckdConfig, registry: &mut Registry) -> Result<Self, BoxError> {
        let machine = ResourceMachine::new(Self::NAME, StateOnly);
        let probes = engine::probe_thread()?;
        let engine = Engine::new(probes, Prober::new(), Metrics::register(registry));
        tokio::spawn(link::run(
            engine.clone(),
            config.ipvsd_socket.clone(),
            config.reconnect_max,
            machine.clone(),
        ));
        tokio::spawn(memory::give_back_freed());
        if let Some(dir) = &config.maintenance_dir {
            tokio::spawn(maintenance::watch(engine.clone(), dir.clone()));
        }
        Ok(Self { machine, engine })
    }

    fn services(&self, shutdown: &CancellationToken) -> Services {
        let resource = ResourceService::new(self.machine.clone(), shutdown.clone());
        let check = CheckService::new(self.engine.clone(), shutdown.clone());
        Services::new()
            .with(resource.into_server())
            .with(check.into_server())
    }

    async fn reload(&self, _config: CheckdConfig) -> Result<(), BoxError> {
        tracing::info!(
            "reload: targets follow ipvsd's table; checkd's own settings apply at restart"
        );
        Ok(())
    }
}

/// Drops this thread's ambient capabilities, before any other thread
/// starts: the unit grants `CAP_NET_ADMIN` and `CAP_NET_RAW` as ambient so
/// that checkd has them, and checkd keeps them, but ambient ones would also
/// pass to every `external` check's command.
pub fn drop_ambient_capabilities() -> std::io::Result<()> {
    Ok(rustix::thread::clear_ambient_capability_set()?)
}
