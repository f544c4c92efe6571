//! ipvsd owns the desired IPVS service table and reconciles the kernel to
//! it by diff, never a flush: ACTIVE means table applied and connection-sync
//! master; STANDBY means table applied and sync backup. It never decides a
//! role (hbd does) and never probes real servers (checkd does).
//!
//! Built so far: the IPVS netlink client ([`ipvs`]), the desired table and
//! its diff ([`table`], [`plan`]), the data-plane seam ([`backend`]), one
//! reconcile pass ([`reconcile`]), the ipvsadm rule format ([`rules`]), the
//! config ([`config`], validated by `--check-config`) and the effective
//! weights ([`effective`]). The daemon does not yet run the reconcile loop:
//! its resource transitions still only record state (issue #5 continues).

pub mod backend;
pub mod config;
pub mod effective;
pub mod ipvs;
pub mod plan;
pub mod reconcile;
pub mod rules;
pub mod table;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{Daemon, Services};

use crate::config::IpvsdConfig;
use tandem_resource::{ResourceMachine, ResourceService, StateOnly};
use tokio_util::sync::CancellationToken;

/// The ipvsd daemon.
pub struct Ipvsd {
    machine: ResourceMachine<StateOnly>,
}

impl Daemon for Ipvsd {
    const NAME: &'static str = "ipvsd";
    type Config = IpvsdConfig;

    fn build(_config: &IpvsdConfig, _registry: &mut Registry) -> Result<Self, BoxError> {
        Ok(Self {
            machine: ResourceMachine::new(Self::NAME, StateOnly),
        })
    }

    fn services(&self, shutdown: &CancellationToken) -> Services {
        let resource = ResourceService::new(self.machine.clone(), shutdown.clone());
        Services::new().with(resource.into_server())
    }

    async fn reload(&self, _config: IpvsdConfig) -> Result<(), BoxError> {
        Ok(())
    }
}
