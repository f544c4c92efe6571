//! ipvsadm's spellings of service settings, in one place for the config,
//! the rule format and the effective table: scheduler flag names (`-b`) and
//! persistence netmasks (`-M`).

use std::net::Ipv4Addr;

use crate::ipvs::abi::svc_flag;
use crate::ipvs::types::Family;

/// (scheduler, name, bit): `sh` and `mh` name their flags; every other
/// scheduler uses `flag-1..3`.
const SCHED_FLAGS: &[(&str, &str, u32)] = &[
    ("sh", "sh-fallback", svc_flag::SCHED1),
    ("sh", "sh-port", svc_flag::SCHED2),
    ("mh", "mh-fallback", svc_flag::SCHED1),
    ("mh", "mh-port", svc_flag::SCHED2),
    ("", "flag-1", svc_flag::SCHED1),
    ("", "flag-2", svc_flag::SCHED2),
    ("", "flag-3", svc_flag::SCHED3),
];

/// Which naming `scheduler` uses: its own (`sh`, `mh`) or the generic one.
fn naming(scheduler: &str) -> &str {
    match scheduler {
        "sh" | "mh" => scheduler,
        _ => "",
    }
}

/// The bit of flag `name` under any scheduler's naming (as `ipvsadm -b` reads it).
pub fn sched_flag_bit(name: &str) -> Option<u32> {
    SCHED_FLAGS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(_, _, bit)| *bit)
}

/// The bit of flag `name` if it is one of `scheduler`'s own names.
pub fn sched_flag_bit_of(scheduler: &str, name: &str) -> Option<u32> {
    SCHED_FLAGS
        .iter()
        .find(|(s, n, _)| *s == naming(scheduler) && *n == name)
        .map(|(_, _, bit)| *bit)
}

/// The names of the flag bits set in `flags`, as ipvsadm prints them for `scheduler`.
pub fn sched_flag_names(scheduler: &str, flags: u32) -> Vec<&'static str> {
    SCHED_FLAGS
        .iter()
        .filter(|(s, _, bit)| *s == naming(scheduler) && flags & bit != 0)
        .map(|(_, name, _)| *name)
        .collect()
}

/// The persistence netmask of a `family` service when none is given: one client address.
pub fn default_netmask(family: Family) -> u32 {
    match family {
        Family::V4 => u32::MAX,
        Family::V6 => 128,
    }
}

/// Parses a persistence netmask: an IPv4 mask (`255.255.255.0`) for IPv4,
/// a prefix length 1–128 for IPv6.
pub fn parse_netmask(family: Family, text: &str) -> Option<u32> {
    match family {
        Family::V4 => text.parse::<Ipv4Addr>().ok().map(u32::from),
        Family::V6 => text.parse().ok().filter(|p| (1..=128).contains(p)),
    }
}
