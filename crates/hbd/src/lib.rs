//! hbd owns this node's role: it is the only daemon that decides ACTIVE or
//! STANDBY, from heartbeats on every link, and drives the resource group
//! (vipd, ipvsd, checkd, …) through `tandem.resource.v1` in order. It never
//! touches addresses or the IPVS table itself.
//!
//! The parts: the config ([`config`]) and key file ([`keys`]); heartbeats
//! on the wire ([`wire`]), in serial frames ([`serial`]) and on the links
//! ([`links`]); who should own the group ([`ownership`]) and the steppable
//! membership state machine ([`membership`]); the resource group
//! ([`group`]); fence and notify commands ([`command`]); the loop that
//! ties them together ([`node`]); `tandem.hb.v1` ([`api`]); metrics
//! ([`metrics`]).

pub mod api;
pub mod command;
pub mod config;
pub mod group;
pub mod keys;
pub mod links;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod ownership;
pub mod ping;
pub mod serial;
pub mod wire;

use prometheus_client::registry::Registry;
use tandem_daemon::runner::BoxError;
use tandem_daemon::{Daemon, Services};
use tokio_util::sync::CancellationToken;

use crate::api::MembershipService;
use crate::config::HbdConfig;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::node::Handle;

/// The hbd daemon.
pub struct Hbd {
    node: Handle,
    running: HbdConfig,
}

impl Daemon for Hbd {
    const NAME: &'static str = "hbd";
    type Config = HbdConfig;

    fn build(config: &HbdConfig, registry: &mut Registry) -> Result<Self, BoxError> {
        let keys = Keys::load(&config.key_file)?;
        let metrics = Metrics::register(registry);
        let node = node::start(config.clone(), keys, metrics)?;
        Ok(Self {
            node,
            running: config.clone(),
        })
    }

    fn services(&self, shutdown: &CancellationToken) -> Services {
        Services::new()
            .with(MembershipService::new(self.node.clone(), shutdown.clone()).into_server())
    }

    /// Re-reads the key file (key rotation). Every other change needs a
    /// restart, and is refused with the names of the changed fields.
    async fn reload(&self, config: HbdConfig) -> Result<(), BoxError> {
        let keys = Keys::load(&config.key_file)?;
        let changed = self.running.restart_fields(&config);
        if !changed.is_empty() {
            return Err(format!(
                "changing {} needs a restart of hbd (the key file was not re-read either)",
                changed.join(", ")
            )
            .into());
        }
        self.node.set_keys(keys);
        tracing::info!(key_file = %config.key_file.display(), "key file re-read");
        Ok(())
    }

    async fn stop(&self) {
        self.node.leave().await;
    }
}
