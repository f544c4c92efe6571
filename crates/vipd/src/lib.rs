//! vipd owns virtual addresses and neighbour announcements on this host:
//! ACTIVE means the VIPs are on their interfaces and announced (gratuitous
//! ARP / unsolicited NA); STANDBY means no VIP there (in real-server mode
//! the VIPs sit on `lo` or a tunnel device, hidden from ARP); STOPPED
//! means nothing of vipd's is left and every sysctl it changed is back.
//! It never decides a role (hbd does) and never touches the IPVS table
//! (ipvsd does).
//!
//! The parts: addresses and their rules ([`vip`]); the config
//! ([`config`]); the host's shape per state ([`layout`]); making the host
//! match it with undo ([`apply`]) over kernel calls ([`host`],
//! [`kernel`]) and the record of what to put back ([`journal`]);
//! announcement frames ([`frames`]) sent on the wire ([`wire`]) by
//! [`announce`]; the lock that serialises it all and the resource hook
//! ([`control`]); `tandem.vip.v1` ([`api`]).

pub mod announce;
pub mod api;
pub mod apply;
pub mod config;
pub mod control;
pub mod frames;
pub mod host;
pub mod journal;
pub mod kernel;
pub mod layout;
pub mod vip;
pub mod wire;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{Daemon, Services};
use tandem_resource::{ResourceMachine, ResourceService, State};
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::api::VipService;
use crate::config::{InitialState, VipdConfig};
use crate::control::{Control, VipHook, verify_loop};

/// The vipd daemon.
pub struct Vipd {
    machine: ResourceMachine<VipHook>,
    control: Control,
    shutdown: CancellationToken,
}

impl Daemon for Vipd {
    const NAME: &'static str = "vipd";
    type Config = VipdConfig;

    fn build(config: &VipdConfig, registry: &mut Registry) -> Result<Self, BoxError> {
        let control = Control::new(config.clone(), Announcer::new(registry))?;
        let machine = ResourceMachine::new(Self::NAME, VipHook(control.clone()));
        let shutdown = CancellationToken::new();
        tokio::spawn(verify_loop(
            control.clone(),
            machine.clone(),
            config.verify_interval,
            shutdown.clone(),
        ));
        if config.initial_state == InitialState::Standby {
            let machine = machine.clone();
            tokio::spawn(async move {
                if let Err(e) = machine.transition(State::Standby, 0).await {
                    tracing::error!(error = %e, "could not enter STANDBY at start");
                }
            });
        }
        Ok(Self {
            machine,
            control,
            shutdown,
        })
    }

    fn services(&self, shutdown: &CancellationToken) -> Services {
        let resource = ResourceService::new(self.machine.clone(), shutdown.clone());
        let vip = VipService::new(self.control.clone());
        Services::new()
            .with(resource.into_server())
            .with(vip.into_server())
    }

    async fn reload(&self, config: VipdConfig) -> Result<(), BoxError> {
        self.control.reload(config).await?;
        Ok(())
    }
}

impl Drop for Vipd {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
