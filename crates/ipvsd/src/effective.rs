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
use std::net::IpAddr;

use crate::config::{IpvsdConfig, VirtualService};
use crate::ipvs::abi::svc_flag;
use crate::ipvs::types::{Dest, Forward, Service, ServiceKey, Tunnel};
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

/// Run-time state of one real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealState {
    /// Its health.
    pub health: Health,
    /// Drained by an operator: no new connections.
    pub drained: bool,
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

/// The desired table for `config` given the reals' run-time `states`
/// (absent = not yet checked, not drained).
pub fn desired_table(config: &IpvsdConfig, states: &HashMap<RealId, RealState>) -> Table {
    let mut table = Table::new();
    for vs in &config.virtual_services {
        let Some(key) = vs.key() else { continue };
        let mut spec = ServiceSpec::new(service_of(vs, key));
        let mut serving = 0;
        for real in &vs.reals {
            let port = vs.real_port(real);
            let state = states
                .get(&(key, real.address, port))
                .copied()
                .unwrap_or_default();
            let weight = match (state.drained, state.health) {
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

#[cfg(test)]
mod tests;
