//! [`Layout`]: what the host should look like in each resource state —
//! which addresses where, which sysctls set, which tunnel links up — as
//! pure data from the config. [`crate::apply`] makes the host match it.
//!
//! - ACTIVE: the director VIPs on their interfaces; real-server sysctls
//!   put back; forwarding on when configured (the seed's `lvs start`,
//!   then `IPaddr start`).
//! - STANDBY: no director VIP; in real-server mode the VIPs on `lo` or the
//!   tunnel device with ARP hidden (the seed's `IPaddr stop`, then
//!   `lvs stop`). Forwarding is left as it is.
//! - Both: `accept_local` on the configured interfaces (answers to
//!   checkd's `through_vip` probes come from the VIP).
//! - STOPPED: nothing of vipd's on the host; every sysctl back.

use tandem_resource::State;

use crate::config::{RealServerMode, VipdConfig};
use crate::vip::Cidr;

/// Which role an address serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A director VIP, announced while ACTIVE.
    Director,
    /// A real-server address on `lo` or a tunnel device.
    RealServer,
}

/// An address that belongs on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The address and prefix.
    pub cidr: Cidr,
    /// The interface it goes on.
    pub interface: String,
    /// Its IPv4 label.
    pub label: Option<String>,
    /// Its role.
    pub placement: Placement,
}

/// Which recorded sysctls to put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// These keys, if vipd changed them.
    Keys(Vec<String>),
    /// Every key vipd changed.
    All,
}

/// What the host should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Addresses vipd wants; every other address vipd added goes.
    pub addresses: Vec<Wanted>,
    /// Sysctls to set, in order: (key under /proc/sys, value).
    pub sysctls: Vec<(String, String)>,
    /// Recorded sysctls to put back (those not also in `sysctls`).
    pub restore: Restore,
    /// Tunnel links that must be up; links vipd set up and not listed go
    /// down again.
    pub links_up: Vec<String>,
    /// Whether the director VIPs are announced.
    pub announce: bool,
}

/// Every director VIP as a [`Wanted`].
pub fn director_addresses(config: &VipdConfig) -> Vec<Wanted> {
    config
        .addresses
        .iter()
        .map(|v| Wanted {
            cidr: v.address,
            interface: v.interface.clone(),
            label: v.label.clone(),
            placement: Placement::Director,
        })
        .collect()
}

/// Every real-server address as a [`Wanted`] (none without real-server mode).
pub fn real_server_addresses(config: &VipdConfig) -> Vec<Wanted> {
    let Some(rs) = &config.real_server else {
        return Vec::new();
    };
    config
        .real_server_addresses()
        .into_iter()
        .map(|cidr| Wanted {
            cidr,
            interface: rs.mode.device(cidr.addr).to_owned(),
            label: None,
            placement: Placement::RealServer,
        })
        .collect()
}

/// The sysctls real-server mode sets: ARP hidden on `all` and the ARP
/// interfaces; for TUN, reverse-path filtering off on the tunnel and `all`
/// (the kernel uses the larger of `all` and the device's value).
pub fn real_server_sysctls(config: &VipdConfig) -> Vec<(String, String)> {
    let Some(rs) = &config.real_server else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut interfaces = vec!["all".to_owned()];
    interfaces.extend(config.arp_interfaces());
    for name in &interfaces {
        keys.push((format!("net/ipv4/conf/{name}/arp_ignore"), "1".to_owned()));
        keys.push((format!("net/ipv4/conf/{name}/arp_announce"), "2".to_owned()));
    }
    let v4 = config
        .real_server_addresses()
        .iter()
        .any(|c| c.addr.is_ipv4());
    if rs.mode == RealServerMode::Tun && v4 {
        keys.push(("net/ipv4/conf/all/rp_filter".to_owned(), "0".to_owned()));
        keys.push(("net/ipv4/conf/tunl0/rp_filter".to_owned(), "0".to_owned()));
    }
    keys
}

/// The tunnel links real-server mode needs up: each holds a real-server
/// address, so the preflight of the addresses already checks they exist.
fn tunnel_links(config: &VipdConfig) -> Vec<String> {
    let Some(rs) = &config.real_server else {
        return Vec::new();
    };
    if rs.mode != RealServerMode::Tun {
        return Vec::new();
    }
    let mut links: Vec<String> = config
        .real_server_addresses()
        .iter()
        .map(|c| rs.mode.device(c.addr).to_owned())
        .collect();
    links.sort();
    links.dedup();
    links
}

/// The forwarding sysctls `ip_forward: true` sets while ACTIVE.
pub fn forwarding_sysctls(config: &VipdConfig) -> Vec<(String, String)> {
    if !config.ip_forward {
        return Vec::new();
    }
    let mut keys = vec![("net/ipv4/ip_forward".to_owned(), "1".to_owned())];
    if config.addresses.iter().any(|v| v.address.addr.is_ipv6()) {
        keys.push(("net/ipv6/conf/all/forwarding".to_owned(), "1".to_owned()));
    }
    keys
}

/// The `accept_local` sysctls, set while STANDBY and ACTIVE: a
/// `through_vip` probe's answer comes from the VIP, a local address.
pub fn accept_local_sysctls(config: &VipdConfig) -> Vec<(String, String)> {
    config
        .accept_local
        .iter()
        .map(|name| (format!("net/ipv4/conf/{name}/accept_local"), "1".to_owned()))
        .collect()
}

/// The host's shape for resource state `state`.
pub fn layout(config: &VipdConfig, state: State) -> Layout {
    match state {
        State::Active => Layout {
            addresses: director_addresses(config),
            sysctls: [forwarding_sysctls(config), accept_local_sysctls(config)].concat(),
            restore: Restore::Keys(
                real_server_sysctls(config)
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect(),
            ),
            links_up: Vec::new(),
            announce: true,
        },
        State::Standby => Layout {
            addresses: real_server_addresses(config),
            sysctls: [real_server_sysctls(config), accept_local_sysctls(config)].concat(),
            restore: Restore::Keys(Vec::new()),
            links_up: tunnel_links(config),
            announce: false,
        },
        State::Stopped => Layout {
            addresses: Vec::new(),
            sysctls: Vec::new(),
            restore: Restore::All,
            links_up: Vec::new(),
            announce: false,
        },
    }
}
