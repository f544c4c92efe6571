//! vipd's config file: the director VIPs, how they are announced, the
//! optional real-server mode, forwarding, and where vipd keeps the sysctl
//! values it must put back.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tandem_daemon::{ConfigError, DaemonConfig, DaemonSettings};

use crate::vip::{Cidr, VipSpec, check_interface, check_unicast};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipdConfig {
    /// Sockets, TLS, metrics, logging.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// The director VIPs: on their interfaces and announced while ACTIVE.
    #[serde(default)]
    pub addresses: Vec<VipSpec>,
    /// How VIPs are announced when they arrive.
    #[serde(default)]
    pub announce: AnnounceSettings,
    /// Real-server mode (the seed's `tunl` script): while STANDBY, the
    /// VIPs sit on `lo` or the tunnel device, hidden from ARP. None: off.
    pub real_server: Option<RealServerSettings>,
    /// Turn IPv4 forwarding on while ACTIVE (and IPv6 forwarding when an
    /// IPv6 VIP is configured); NAT forwarding needs it, DR and TUN do
    /// not. Put back to its old value at STOPPED.
    #[serde(default)]
    pub ip_forward: bool,
    /// Interfaces that accept packets from a local address while STANDBY
    /// or ACTIVE (`accept_local=1`): those facing DR/TUN reals that checkd
    /// probes `through_vip`, whose answers come from the VIP. Put back at
    /// STOPPED.
    #[serde(default)]
    pub accept_local: Vec<String>,
    /// The state vipd moves itself to at start, before any hbd speaks:
    /// `standby` on a plain real server that runs no hbd.
    #[serde(default)]
    pub initial_state: InitialState,
    /// Where vipd records the sysctl values it changed, so a restarted
    /// vipd still puts them back (default `/run/tandem/vipd.state`).
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// How often an ACTIVE vipd checks its VIPs are still there and their
    /// links up (default 1s).
    #[serde(default = "default_verify_interval", with = "humantime_serde")]
    pub verify_interval: Duration,
}

fn default_state_file() -> PathBuf {
    PathBuf::from("/run/tandem/vipd.state")
}

fn default_verify_interval() -> Duration {
    Duration::from_secs(1)
}

impl Default for VipdConfig {
    fn default() -> Self {
        Self {
            daemon: DaemonSettings::default(),
            addresses: Vec::new(),
            announce: AnnounceSettings::default(),
            real_server: None,
            ip_forward: false,
            accept_local: Vec::new(),
            initial_state: InitialState::default(),
            state_file: default_state_file(),
            verify_interval: default_verify_interval(),
        }
    }
}

/// The state vipd enters by itself at start.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// Wait for hbd; change nothing on the host (addresses vipd added
    /// before a restart stay where they are).
    #[default]
    Stopped,
    /// Enter STANDBY at once (real-server mode on a plain real server).
    Standby,
}

/// Gratuitous ARP / unsolicited NA pacing. The defaults follow
/// Heartbeat's `send_arp` (5 at 200 ms) and keepalived's second set 5 s
/// later.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AnnounceSettings {
    /// Rounds in a set (1..=100). Each round sends every VIP's frames.
    pub count: u32,
    /// Time between rounds of a set.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Pause between two frames on the wire, so a switch does not
    /// throttle a burst of many VIPs (keepalived's `garp_interval`).
    #[serde(with = "humantime_serde")]
    pub gap: Duration,
    /// A second set this long after the first (keepalived's
    /// `garp_master_delay`); none: no second set.
    #[serde(with = "humantime_serde")]
    pub repeat_after: Option<Duration>,
    /// One round every so often while ACTIVE (keepalived's
    /// `garp_master_refresh`); none: no refresh.
    #[serde(with = "humantime_serde")]
    pub refresh: Option<Duration>,
    /// Which gratuitous ARP forms to send for IPv4.
    pub arp: ArpForms,
    /// Set the router flag in IPv6 neighbour advertisements.
    pub na_router: bool,
}

impl Default for AnnounceSettings {
    fn default() -> Self {
        Self {
            count: 5,
            interval: Duration::from_millis(200),
            gap: Duration::from_millis(1),
            repeat_after: Some(Duration::from_secs(5)),
            refresh: None,
            arp: ArpForms::Both,
            na_router: false,
        }
    }
}

/// The gratuitous ARP forms sent per IPv4 VIP and round.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArpForms {
    /// A request and a reply (hosts differ in which they honour).
    #[default]
    Both,
    /// ARP request only (RFC 5227's announcement).
    Request,
    /// ARP reply only.
    Reply,
}

/// How the real-server side of a node hides the VIP.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RealServerSettings {
    /// `dr`: the VIP on `lo`; `tun`: the VIP on `tunl0` (IPv4, ipip) or
    /// `ip6tnl0` (IPv6), with reverse-path filtering relaxed there.
    pub mode: RealServerMode,
    /// The addresses to hide; default: every director VIP's address.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Interfaces that get `arp_ignore=1` and `arp_announce=2` (besides
    /// `all`); default: the director VIPs' interfaces.
    #[serde(default)]
    pub arp_interfaces: Vec<String>,
}

/// Where a real server keeps the VIP.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RealServerMode {
    /// Direct routing: the VIP on `lo`.
    Dr,
    /// IP-in-IP tunnelling: the VIP on the tunnel device.
    Tun,
}

impl RealServerMode {
    /// The device that holds an address of this family in this mode.
    pub fn device(self, addr: IpAddr) -> &'static str {
        match (self, addr) {
            (Self::Dr, _) => "lo",
            (Self::Tun, IpAddr::V4(_)) => "tunl0",
            (Self::Tun, IpAddr::V6(_)) => "ip6tnl0",
        }
    }
}

impl VipdConfig {
    /// The real-server addresses: as configured, or the director VIPs'.
    pub fn real_server_addresses(&self) -> Vec<Cidr> {
        let Some(rs) = &self.real_server else {
            return Vec::new();
        };
        let addrs: Vec<IpAddr> = if rs.addresses.is_empty() {
            self.addresses.iter().map(|v| v.address.addr).collect()
        } else {
            rs.addresses.clone()
        };
        addrs.into_iter().map(Cidr::host).collect()
    }

    /// The interfaces whose ARP behaviour real-server mode restricts.
    pub fn arp_interfaces(&self) -> Vec<String> {
        let Some(rs) = &self.real_server else {
            return Vec::new();
        };
        let mut names: Vec<String> = if rs.arp_interfaces.is_empty() {
            self.addresses.iter().map(|v| v.interface.clone()).collect()
        } else {
            rs.arp_interfaces.clone()
        };
        names.sort();
        names.dedup();
        names
    }
}

impl DaemonConfig for VipdConfig {
    fn settings(&self) -> &DaemonSettings {
        &self.daemon
    }

    fn settings_mut(&mut self) -> &mut DaemonSettings {
        &mut self.daemon
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, why: String| ConfigError::invalid(origin, &field, &why);
        let mut seen = BTreeSet::new();
        for (i, vip) in self.addresses.iter().enumerate() {
            vip.validate()
                .map_err(|(field, e)| invalid(format!("addresses[{i}].{field}"), e.to_string()))?;
            if !seen.insert(vip.address.addr) {
                return Err(invalid(
                    format!("addresses[{i}].address"),
                    format!("{} is listed twice", vip.address.addr),
                ));
            }
        }
        self.announce
            .validate()
            .map_err(|(field, why)| invalid(format!("announce.{field}"), why.to_owned()))?;
        if self.verify_interval < Duration::from_millis(10) {
            return Err(invalid(
                "verify_interval".into(),
                "must be at least 10ms".into(),
            ));
        }
        if let Some(rs) = &self.real_server {
            if rs.addresses.is_empty() && self.addresses.is_empty() {
                return Err(invalid(
                    "real_server.addresses".into(),
                    "needs at least one address when no director VIP is configured".into(),
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, addr) in rs.addresses.iter().enumerate() {
                let field = format!("real_server.addresses[{i}]");
                check_unicast(*addr).map_err(|e| invalid(field.clone(), e.to_string()))?;
                if !seen.insert(*addr) {
                    return Err(invalid(field, format!("{addr} is listed twice")));
                }
            }
            for (i, name) in rs.arp_interfaces.iter().enumerate() {
                check_interface(name).map_err(|e| {
                    invalid(format!("real_server.arp_interfaces[{i}]"), e.to_string())
                })?;
            }
        }
        let mut seen = BTreeSet::new();
        for (i, name) in self.accept_local.iter().enumerate() {
            let field = format!("accept_local[{i}]");
            check_interface(name).map_err(|e| invalid(field.clone(), e.to_string()))?;
            if !seen.insert(name) {
                return Err(invalid(field, format!("{name} is listed twice")));
            }
        }
        if self.initial_state == InitialState::Standby && self.real_server.is_none() {
            return Err(invalid(
                "initial_state".into(),
                "standby at start only makes sense with real_server configured".into(),
            ));
        }
        Ok(())
    }
}

impl AnnounceSettings {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=100).contains(&self.count) {
            return Err(("count", "must be between 1 and 100"));
        }
        if self.interval < Duration::from_millis(1) || self.interval > Duration::from_secs(60) {
            return Err(("interval", "must be between 1ms and 60s"));
        }
        if self.gap > Duration::from_millis(100) {
            return Err(("gap", "must be at most 100ms"));
        }
        if self
            .repeat_after
            .is_some_and(|d| d < Duration::from_millis(1))
        {
            return Err((
                "repeat_after",
                "must be at least 1ms (leave it out for none)",
            ));
        }
        if self.refresh.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(("refresh", "must be at least 1s (leave it out for none)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
