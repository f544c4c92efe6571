//! The desired kernel table, derived from the config plus what is known at
//! run time: each real's health (from checkd) and operator state (drain).
//! The rules, per real:
//!
//! | state | kernel |
//! |---|---|
//! | healthy, or not yet checked | configured weight |
//! | drained by an operator | weight 0 (kept: its connections finish) |
//! | unhealthy, quiescent service | weight 0 |
//! | unhealthy, not quiescent | removed |
//!
//! and when no real of a service can take new connections, its fallback
//! ("sorry") server is added with weight 1. Pure: no I/O, no clock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::config::{
    FamilyName, ForwardName, Persistence, ProtocolName, RealServer, VirtualService,
};
use crate::ipvs::abi::svc_flag;
use crate::ipvs::types::{Dest, Family, Forward, Protocol, Service, ServiceKey, Tunnel};
use crate::spelling;
use crate::table::{ServiceSpec, Table};

/// What checkd last said of a real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet (after start): treated as healthy, as ldirectord does.
    #[default]
    Unknown,
    /// Passing its checks.
    Up,
    /// Failing its checks.
    Down,
}

/// Where a real is in an operator's drain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drain {
    /// Not drained.
    #[default]
    None,
    /// Weight 0, waiting for connections to end; `drain` tells drains apart
    /// so an old one that was undone and redone does not finish the new one.
    Draining {
        /// Which drain.
        drain: u64,
    },
    /// Weight 0, finished.
    Drained {
        /// The drain ended by its timeout, not by connections ending.
        timed_out: bool,
    },
}

impl Drain {
    /// True while the real takes no new connections because of a drain.
    pub fn is_drained(self) -> bool {
        self != Self::None
    }
}

/// Run-time state of one real server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealState {
    /// Its health.
    pub health: Health,
    /// checkd's reason for the last failure.
    pub detail: String,
    /// Operator drain.
    pub drain: Drain,
}

/// Identifies a real across the table: its service and address:port.
pub type RealId = (ServiceKey, IpAddr, u16);

/// The kernel service settings of a configured virtual service.
pub fn service_of(vs: &VirtualService, key: ServiceKey) -> Service {
    let mut flags = 0;
    for name in &vs.scheduler_flags {
        // Validation admitted only names of this scheduler.
        flags |= spelling::sched_flag_bit(name).unwrap_or(0);
    }
    if vs.one_packet {
        flags |= svc_flag::ONEPACKET;
    }
    let (timeout, netmask) = match (&vs.persistence, key.family()) {
        (Some(p), family) => {
            flags |= svc_flag::PERSISTENT;
            let netmask = p
                .netmask
                .as_deref()
                .and_then(|m| spelling::parse_netmask(family, m))
                .unwrap_or(spelling::default_netmask(family));
            (
                u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX),
                netmask,
            )
        }
        (None, family) => (0, spelling::default_netmask(family)),
    };
    Service {
        key,
        scheduler: vs.scheduler.clone(),
        flags,
        timeout,
        netmask,
        pe_name: None,
    }
}

/// The desired table for `services` given the reals' run-time `states`
/// (absent = not yet checked, not drained).
pub fn desired_table(services: &[VirtualService], states: &HashMap<RealId, RealState>) -> Table {
    let mut table = Table::new();
    for vs in services {
        let Some(key) = vs.key() else { continue };
        let mut spec = ServiceSpec::new(service_of(vs, key));
        let mut serving = 0;
        for real in &vs.reals {
            let port = vs.real_port(real);
            let state = states.get(&(key, real.address, port));
            let (drained, health) = state.map_or((false, Health::Unknown), |s| {
                (s.drain.is_drained(), s.health)
            });
            let weight = match (drained, health) {
                (true, _) => 0,
                (false, Health::Down) if !vs.quiescent => continue,
                (false, Health::Down) => 0,
                (false, Health::Up | Health::Unknown) => real.weight,
            };
            if weight > 0 {
                serving += 1;
            }
            spec = spec.with(Dest {
                addr: real.address,
                port,
                forward: real.forward.unwrap_or(vs.forward).forward(),
                tunnel: Tunnel::Ipip,
                weight,
                upper: real.upper_threshold,
                lower: real.lower_threshold,
            });
        }
        if let (0, Some(fallback)) = (serving, vs.fallback) {
            let forward = if fallback.port() == vs.port.unwrap_or(0) {
                vs.forward.forward()
            } else {
                Forward::Masq
            };
            spec = spec.with(Dest {
                addr: fallback.ip(),
                port: fallback.port(),
                forward,
                tunnel: Tunnel::Ipip,
                weight: 1,
                upper: 0,
                lower: 0,
            });
        }
        table.insert(spec);
    }
    table
}

/// The virtual services that `table` is the desired table of (every real
/// healthy, none drained): the inverse of [`desired_table`], used to import
/// `ipvsadm -R` rules. Fails, naming the real, on what the services cannot
/// say: local/bypass forwarding, GUE/GRE tunnels, persistence engines.
pub fn services_of_table(table: &Table) -> Result<Vec<VirtualService>, String> {
    table.services.values().map(virtual_service_of).collect()
}

fn virtual_service_of(spec: &ServiceSpec) -> Result<VirtualService, String> {
    let s = &spec.service;
    if let Some(pe) = &s.pe_name {
        return Err(format!(
            "{}: persistence engine `{pe}` is not supported",
            s.key
        ));
    }
    let (protocol, address, port, fwmark, family) = match s.key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let protocol = match protocol {
                Protocol::Tcp => ProtocolName::Tcp,
                Protocol::Udp => ProtocolName::Udp,
                Protocol::Sctp => ProtocolName::Sctp,
            };
            (protocol, Some(addr), Some(port), None, FamilyName::Ipv4)
        }
        ServiceKey::Fwmark { family, mark } => {
            let family = match family {
                Family::V4 => FamilyName::Ipv4,
                Family::V6 => FamilyName::Ipv6,
            };
            (ProtocolName::Tcp, None, None, Some(mark), family)
        }
    };
    let persistence = (s.flags & svc_flag::PERSISTENT != 0).then(|| Persistence {
        timeout: Duration::from_secs(s.timeout.into()),
        netmask: (s.netmask != spelling::default_netmask(s.key.family())).then(|| {
            match s.key.family() {
                Family::V4 => Ipv4Addr::from(s.netmask).to_string(),
                Family::V6 => s.netmask.to_string(),
            }
        }),
    });
    let reals = spec
        .dests
        .values()
        .map(|d| {
            let forward = match (d.forward, d.tunnel) {
                (Forward::Route, _) => ForwardName::Route,
                (Forward::Masq, _) => ForwardName::Masq,
                (Forward::Tunnel, Tunnel::Ipip) => ForwardName::Tunnel,
                (other, tunnel) => {
                    return Err(format!(
                        "{} real {}:{}: forwarding {other:?} {tunnel:?} is not supported",
                        s.key, d.addr, d.port
                    ));
                }
            };
            Ok(RealServer {
                address: d.addr,
                port: (Some(d.port) != port).then_some(d.port),
                weight: d.weight,
                forward: Some(forward),
                upper_threshold: d.upper,
                lower_threshold: d.lower,
                check: None,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(VirtualService {
        name: None,
        protocol,
        address,
        port,
        fwmark,
        family,
        scheduler: s.scheduler.clone(),
        scheduler_flags: spelling::sched_flag_names(&s.scheduler, s.flags)
            .into_iter()
            .map(String::from)
            .collect(),
        persistence,
        one_packet: s.flags & svc_flag::ONEPACKET != 0,
        forward: ForwardName::Route,
        quiescent: true,
        fallback: None,
        reals,
        check: None,
    })
}

#[cfg(test)]
mod tests;
