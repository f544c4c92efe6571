//! ipvsd owns the desired IPVS service table and reconciles the kernel to
//! it by diff, never a flush: ACTIVE means table applied and connection-sync
//! master; STANDBY means table applied and sync backup. It never decides a
//! role (hbd does) and never probes real servers (checkd does).
//!
//! The parts: the IPVS netlink client ([`ipvs`]); the desired table and its
//! diff ([`table`], [`plan`]); the data-plane seam ([`backend`]); one
//! reconcile pass ([`reconcile`]); the ipvsadm rule format ([`rules`]); the
//! config ([`config`], with the check specs of [`check`]), validated by
//! `--check-config`; the run-time model of services, health and drains
//! ([`model`]) and the effective weights derived from it ([`effective`]);
//! the table owner ([`owner`]) that resource transitions and API changes
//! drive; operator drains ([`drain`]); the state file that keeps API
//! changes across restarts ([`store`]); the probe services of `through_vip`
//! checks ([`probe_mark`]); and `tandem.ipvs.v1` ([`api`]).

pub mod api;
pub mod backend;
pub mod check;
pub mod config;
pub mod drain;
pub mod effective;
pub mod field;
pub mod ipvs;
pub mod model;
pub mod owner;
pub mod plan;
pub mod probe_mark;
pub mod reconcile;
pub mod rules;
pub mod spelling;
pub mod store;
pub mod table;

use std::time::Duration;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{Daemon, Services};
use tandem_resource::{ResourceMachine, ResourceService};
use tokio_util::sync::CancellationToken;

use crate::api::IpvsService;
use crate::backend::KernelConnect;
use crate::config::IpvsdConfig;
use crate::owner::Owner;

/// The ipvsd daemon: the resource machine around the table owner.
pub struct Ipvsd {
    machine: ResourceMachine<Owner<KernelConnect>>,
}

impl Daemon for Ipvsd {
    const NAME: &'static str = "ipvsd";
    type Config = IpvsdConfig;

    fn build(config: &IpvsdConfig, _registry: &mut Registry) -> Result<Self, BoxError> {
        let connect = KernelConnect {
            sync: config
                .sync
                .as_ref()
                .map(|s| (s.interface.clone(), s.sync_id)),
        };
        let owner = Owner::restore(connect, config.clone())?;
        let machine = ResourceMachine::new(Self::NAME, owner);
        tokio::spawn(drift_loop(machine.clone()));
        Ok(Self { machine })
    }

    fn services(&self, shutdown: &CancellationToken) -> Services {
        let resource = ResourceService::new(self.machine.clone(), shutdown.clone());
        let table = IpvsService::new(self.machine.clone(), shutdown.clone());
        Services::new()
            .with(resource.into_server())
            .with(table.into_server())
    }

    async fn reload(&self, config: IpvsdConfig) -> Result<(), BoxError> {
        Ok(self.machine.hook().reload(config).await?)
    }
}

/// Every `drift_check_interval` while serving: compares the kernel with the
/// desired table (repairs or reports per config), looks at the sync daemon,
/// and puts what it found in the resource status.
async fn drift_loop(machine: ResourceMachine<Owner<KernelConnect>>) {
    loop {
        let interval = machine.hook().config().drift_check_interval;
        tokio::time::sleep(interval.max(Duration::from_millis(100))).await;
        if let Some((health, detail)) = machine.hook().check_health().await {
            machine.set_health(health, detail);
        }
    }
}
