//! ipvsd's config file: the `daemon:` section, then the virtual services
//! as an ldirectord or keepalived operator would write them. Parsing is
//! serde's; [`IpvsdConfig::validate`] checks the rules serde cannot, naming
//! the field (`virtual_services[1].reals[0].port`), before anything applies.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tandem_daemon::{ConfigError, DaemonConfig, DaemonSettings};

use crate::check::CheckSpec;
use crate::field::FieldError;
use crate::ipvs::types::{Family, Forward, Protocol, ServiceKey};
use crate::probe_mark::{MarkRange, ProbeMarks, through_vip_refusal};
use crate::spelling;

/// Schedulers Linux ships (`twos` since 6.7).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpvsdConfig {
    /// Sockets, TLS, metrics, logging.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// What to do when the kernel table differs from the desired one.
    #[serde(default)]
    pub drift: DriftPolicy,
    /// How often the kernel table is compared with the desired one while
    /// STANDBY or ACTIVE (default 5s).
    #[serde(default = "default_drift_interval", with = "humantime_serde")]
    pub drift_check_interval: Duration,
    /// Connection synchronisation between the directors: master while
    /// ACTIVE, backup while STANDBY. None: no sync daemon.
    pub sync: Option<SyncConfig>,
    /// Where ipvsd keeps the table as changed over the API (and drains),
    /// so a restart serves what was served. None: API changes last until
    /// the daemon stops.
    pub state_file: Option<PathBuf>,
    /// The firewall marks of the probe services of `through_vip` checks
    /// (default 65,536 from 0x7a000000).
    #[serde(default)]
    pub probe_marks: MarkRange,
    /// The virtual services.
    #[serde(default)]
    pub virtual_services: Vec<VirtualService>,
}

fn default_drift_interval() -> Duration {
    Duration::from_secs(5)
}

/// The IPVS connection-sync daemon (`ipvsadm --start-daemon`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Interface the sync multicast uses.
    pub interface: String,
    /// Sync id, the same on both directors (0-255).
    #[serde(default)]
    pub sync_id: u8,
}

/// What to do about a kernel table changed behind ipvsd's back (`ipvsadm` by hand).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Put it back and log what was repaired (default).
    #[default]
    Repair,
    /// Log and report it, change nothing.
    Report,
}

/// Transport protocol of an address service.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// TCP (default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// How packets reach real servers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardName {
    /// Direct routing (`-g`, default).
    #[default]
    Route,
    /// NAT (`-m`).
    Masq,
    /// IP-in-IP tunnel (`-i`).
    Tunnel,
}

impl ForwardName {
    /// The kernel's forwarding method.
    pub fn forward(self) -> Forward {
        match self {
            Self::Route => Forward::Route,
            Self::Masq => Forward::Masq,
            Self::Tunnel => Forward::Tunnel,
        }
    }
}

/// Client persistence (`ipvsadm -p`, ldirectord's `persistent`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// How long a client sticks to its real (e.g. `600s`, `10m`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Granularity: an IPv4 netmask (`255.255.255.0`) or an IPv6 prefix
    /// length (`64`). Default: per client address.
    pub netmask: Option<String>,
}

/// A virtual service.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VirtualService {
    /// A name for logs and the API; default `PROTO/ADDR:PORT` or `fwmark/N`.
    pub name: Option<String>,
    /// Transport protocol (ignored with `fwmark`).
    #[serde(default)]
    pub protocol: ProtocolName,
    /// Virtual address (the VIP); absent for a firewall-mark service.
    pub address: Option<IpAddr>,
    /// Virtual port; 0 only with persistence (all ports).
    pub port: Option<u16>,
    /// Firewall mark, instead of address and port.
    pub fwmark: Option<u32>,
    /// Address family of a firewall-mark service: `ipv4` (default) or `ipv6`.
    #[serde(default)]
    pub family: FamilyName,
    /// Scheduler (default `wlc`, as ipvsadm).
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// Scheduler flags: `sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`, `flag-1..3`.
    #[serde(default)]
    pub scheduler_flags: Vec<String>,
    /// Client persistence.
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (UDP only).
    #[serde(default)]
    pub one_packet: bool,
    /// Default forwarding method of the reals.
    #[serde(default)]
    pub forward: ForwardName,
    /// A failed real keeps its place with weight 0 (true, ldirectord's
    /// default) or is removed (false).
    #[serde(default = "yes")]
    pub quiescent: bool,
    /// The "sorry" server, added when no real can take traffic.
    pub fallback: Option<SocketAddr>,
    /// The real servers.
    #[serde(default)]
    pub reals: Vec<RealServer>,
    /// How checkd probes the reals (default: a TCP connect).
    pub check: Option<Box<CheckSpec>>,
}

/// A firewall-mark service's family.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FamilyName {
    /// IPv4 (default).
    #[default]
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Default for IpvsdConfig {
    fn default() -> Self {
        Self {
            daemon: DaemonSettings::default(),
            drift: DriftPolicy::default(),
            drift_check_interval: default_drift_interval(),
            sync: None,
            state_file: None,
            probe_marks: MarkRange::default(),
            virtual_services: Vec::new(),
        }
    }
}

fn default_scheduler() -> String {
    "wlc".into()
}

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

/// A real server.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Its address.
    pub address: IpAddr,
    /// Its port; default the service's. With `route` and `tunnel` it must be
    /// the service's: the kernel forwards to the virtual port regardless.
    pub port: Option<u16>,
    /// Configured weight (default 1, 0–65535).
    #[serde(default = "one")]
    pub weight: i32,
    /// Forwarding method, overriding the service's.
    pub forward: Option<ForwardName>,
    /// Upper connection threshold (0 = none).
    #[serde(default)]
    pub upper_threshold: u32,
    /// Lower connection threshold (0 = none).
    #[serde(default)]
    pub lower_threshold: u32,
    /// Overrides the service's check spec.
    pub check: Option<Box<CheckSpec>>,
}

impl VirtualService {
    /// The kernel's key for this service (after validation, always `Some`).
    pub fn key(&self) -> Option<ServiceKey> {
        match (self.fwmark, self.address) {
            (Some(mark), None) => Some(ServiceKey::Fwmark {
                family: match self.family {
                    FamilyName::Ipv4 => Family::V4,
                    FamilyName::Ipv6 => Family::V6,
                },
                mark,
            }),
            (None, Some(addr)) => Some(ServiceKey::Addr {
                protocol: match self.protocol {
                    ProtocolName::Tcp => Protocol::Tcp,
                    ProtocolName::Udp => Protocol::Udp,
                    ProtocolName::Sctp => Protocol::Sctp,
                },
                addr,
                port: self.port?,
            }),
            _ => None,
        }
    }

    /// The port reals get when they name none.
    pub fn real_port(&self, real: &RealServer) -> u16 {
        real.port.or(self.port).unwrap_or(0)
    }

    /// The check that probes `real`: its own, else the service's.
    pub fn check_of<'a>(&'a self, real: &'a RealServer) -> Option<&'a CheckSpec> {
        real.check.as_deref().or(self.check.as_deref())
    }

    /// The display name.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.key().map_or_else(|| "?".into(), |k| k.to_string()))
    }
}

impl DaemonConfig for IpvsdConfig {
    fn settings(&self) -> &DaemonSettings {
        &self.daemon
    }

    fn settings_mut(&mut self) -> &mut DaemonSettings {
        &mut self.daemon
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if self.drift_check_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                origin,
                "drift_check_interval",
                "must be at least 100ms",
            ));
        }
        self.probe_marks.validate().map_err(|e| {
            ConfigError::invalid(origin, format!("probe_marks.{}", e.field), e.message)
        })?;
        let in_services = |e: FieldError| {
            ConfigError::invalid(origin, format!("virtual_services{}", e.field), e.message)
        };
        validate_services(&self.virtual_services).map_err(in_services)?;
        ProbeMarks::new(self.probe_marks)
            .assign(&self.virtual_services)
            .map_err(|e| match e.into_field_error() {
                e if e.field.starts_with('[') => in_services(e),
                e => ConfigError::invalid(origin, e.field, e.message),
            })
    }
}

/// Checks a whole table of services; fields are `[i].…`.
pub fn validate_services(services: &[VirtualService]) -> Result<(), FieldError> {
    let mut keys = BTreeSet::new();
    for (i, vs) in services.iter().enumerate() {
        let at = |e: FieldError| FieldError::new(format!("[{i}].{}", e.field), e.message);
        vs.validate().map_err(at)?;
        let key = vs.key().ok_or_else(|| {
            at(FieldError::new(
                "address",
                "give address and port, or fwmark",
            ))
        })?;
        if !keys.insert(key) {
            return Err(at(FieldError::new(
                "address",
                format!("{key} is defined twice"),
            )));
        }
    }
    Ok(())
}

fn bad(field: &str, message: String) -> FieldError {
    FieldError::new(field, message)
}

impl VirtualService {
    /// Checks the rules serde cannot; fields are relative to the service.
    pub fn validate(&self) -> Result<(), FieldError> {
        let vs = self;
        match (vs.fwmark, vs.address, vs.port) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(bad(
                    "fwmark",
                    "a firewall-mark service has no address or port".into(),
                ));
            }
            (Some(0), ..) => return Err(bad("fwmark", "must be greater than 0".into())),
            (None, None, _) => {
                return Err(bad("address", "give address and port, or fwmark".into()));
            }
            (None, Some(_), None) => {
                return Err(bad("port", "required for an address service".into()));
            }
            (None, Some(_), Some(0)) if vs.persistence.is_none() => {
                return Err(bad("port", "0 (all ports) needs persistence".into()));
            }
            _ => {}
        }
        if !SCHEDULERS.contains(&vs.scheduler.as_str()) {
            return Err(bad(
                "scheduler",
                format!("`{}` is not one of {}", vs.scheduler, SCHEDULERS.join(" ")),
            ));
        }
        for (j, flag) in vs.scheduler_flags.iter().enumerate() {
            let known = spelling::sched_flag_bit_of(&vs.scheduler, flag).is_some();
            if !known {
                return Err(bad(
                    &format!("scheduler_flags[{j}]"),
                    format!("`{flag}` is not a flag of scheduler {}", vs.scheduler),
                ));
            }
        }
        if vs.one_packet && vs.protocol != ProtocolName::Udp {
            return Err(bad(
                "one_packet",
                "one-packet scheduling is for UDP services only".into(),
            ));
        }
        let family = vs.key().map(|k| k.family());
        if let Some(p) = &vs.persistence {
            if p.timeout.as_secs() == 0 {
                return Err(bad("persistence.timeout", "must be at least 1s".into()));
            }
            if let Some(mask) = &p.netmask {
                // A prefix length for IPv6; for IPv4 a mask, contiguous (a prefix).
                let ok = match family.unwrap_or(Family::V4) {
                    Family::V6 => spelling::parse_netmask(Family::V6, mask).is_some(),
                    Family::V4 => spelling::parse_netmask(Family::V4, mask)
                        .is_some_and(|m| m.leading_ones() == m.count_ones()),
                };
                if !ok {
                    return Err(bad(
                        "persistence.netmask",
                        format!(
                            "`{mask}` is not an IPv4 netmask or an IPv6 prefix length 1-128, as the service's family needs"
                        ),
                    ));
                }
            }
        }
        if let Some(fallback) = vs.fallback.filter(|f| Some(Family::of(&f.ip())) != family) {
            return Err(bad(
                "fallback",
                format!("{fallback} is not of the service's address family"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (j, real) in vs.reals.iter().enumerate() {
            let field = |f: &str| format!("reals[{j}].{f}");
            let forward = real.forward.unwrap_or(vs.forward);
            let port = vs.real_port(real);
            if !(0..=65535).contains(&real.weight) {
                return Err(bad(
                    &field("weight"),
                    format!("{} is outside 0-65535", real.weight),
                ));
            }
            if forward != ForwardName::Masq
                && vs.fwmark.is_none()
                && real.port.is_some_and(|p| Some(p) != vs.port)
            {
                return Err(bad(&field("port"), "route and tunnel forward to the service's own port: leave port out or use forward: masq".into()));
            }
            let real_family = Family::of(&real.address);
            if forward == ForwardName::Masq && Some(real_family) != family {
                return Err(bad(
                    &field("address"),
                    format!(
                        "{} cannot be a NAT real of a service of the other address family",
                        real.address
                    ),
                ));
            }
            if !seen.insert((real.address, port)) {
                return Err(bad(
                    &field("address"),
                    format!("{}:{port} is listed twice", real.address),
                ));
            }
            if real.lower_threshold > real.upper_threshold && real.upper_threshold != 0 {
                return Err(bad(
                    &field("lower_threshold"),
                    "must not exceed upper_threshold".into(),
                ));
            }
            if let Some(check) = &real.check {
                check.validate().map_err(|e| e.within(&field("check")))?;
            }
            let own = real.check.is_some();
            if let Some(check) = vs.check_of(real)
                && check.through_vip
                && let Some(why) = through_vip_refusal(vs, forward, check.kind)
            {
                return Err(if own {
                    bad(&field("check.through_vip"), why)
                } else {
                    bad("check.through_vip", format!("real {}: {why}", real.address))
                });
            }
        }
        if let Some(check) = &vs.check {
            check.validate().map_err(|e| e.within("check"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
