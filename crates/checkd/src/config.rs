//! checkd's config file: the `daemon:` section, where ipvsd is, and the
//! operator's maintenance directory. The check specs themselves are not
//! here: they live on ipvsd's services and arrive through its `Watch`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tandem_daemon::{ConfigError, DaemonConfig, DaemonSettings};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckdConfig {
    /// Sockets, TLS, metrics, logging.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// ipvsd's gRPC socket, the source of targets and the sink of reports
    /// (default `/run/tandem/ipvsd.sock`).
    #[serde(default = "default_ipvsd_socket")]
    pub ipvsd_socket: PathBuf,
    /// Longest wait between attempts to reach ipvsd (default 5s); the first
    /// retry is after 100ms and each doubles.
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// ldirectord's `maintenancedir`: a file here named `ADDRESS` or
    /// `ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`) forces that real down
    /// until it is removed. None: no directory is watched.
    pub maintenance_dir: Option<PathBuf>,
}

fn default_ipvsd_socket() -> PathBuf {
    PathBuf::from("/run/tandem/ipvsd.sock")
}

fn default_reconnect_max() -> Duration {
    Duration::from_secs(5)
}

impl Default for CheckdConfig {
    fn default() -> Self {
        Self {
            daemon: DaemonSettings::default(),
            ipvsd_socket: default_ipvsd_socket(),
            reconnect_max: default_reconnect_max(),
            maintenance_dir: None,
        }
    }
}

impl DaemonConfig for CheckdConfig {
    fn settings(&self) -> &DaemonSettings {
        &self.daemon
    }

    fn settings_mut(&mut self) -> &mut DaemonSettings {
        &mut self.daemon
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if self.reconnect_max < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                origin,
                "reconnect_max",
                "must be at least 100ms",
            ));
        }
        Ok(())
    }
}
