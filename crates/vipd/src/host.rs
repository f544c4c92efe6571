//! [`Host`]: the few kernel operations vipd needs (links, addresses,
//! sysctls), as a trait so the transition logic above it can be exercised
//! with injected failures. [`crate::kernel::Kernel`] is the real one.

use std::net::IpAddr;

use crate::vip::Cidr;

/// The `ifa_proto` value vipd stamps on every address it adds ('t'), so a
/// restarted vipd recognises its own addresses and never takes over one
/// somebody else configured. Kernel values are 0..=3.
pub const TANDEM_ADDR_PROTO: u8 = 0x74;

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its Ethernet address, when it has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub lower_up: bool,
}

/// An address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddr {
    /// The interface's index.
    pub ifindex: u32,
    /// The address and prefix.
    pub cidr: Cidr,
    /// Its IPv4 label, if any.
    pub label: Option<String>,
    /// Its `ifa_proto` (0 when the kernel reports none).
    pub proto: u8,
}

impl HostAddr {
    /// True when vipd added it.
    pub fn is_ours(&self) -> bool {
        self.proto == TANDEM_ADDR_PROTO
    }
}

/// A kernel operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {detail}")]
pub struct HostError {
    /// What was being done, e.g. "adding 198.51.100.10/24 to eth0".
    pub op: String,
    /// What the kernel or the filesystem said.
    pub detail: String,
    /// The errno, when there was one.
    pub errno: Option<i32>,
}

impl HostError {
    /// An error with no errno.
    pub fn new(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            op: op.into(),
            detail: detail.into(),
            errno: None,
        }
    }
}

/// The kernel operations vipd performs. Every change is one call, so a
/// transition can undo exactly the calls that succeeded.
pub trait Host: Send + Sync + 'static {
    /// Every interface.
    fn links(&self) -> Result<Vec<Link>, HostError>;
    /// Every address on every interface.
    fn addresses(&self) -> Result<Vec<HostAddr>, HostError>;
    /// Adds `cidr` to interface `link`, stamped with [`TANDEM_ADDR_PROTO`];
    /// IPv6 without duplicate address detection, so it is usable at once.
    fn add_address(&self, link: &Link, cidr: Cidr, label: Option<&str>) -> Result<(), HostError>;
    /// Removes `cidr` from interface `link`.
    fn del_address(&self, link: &Link, cidr: Cidr) -> Result<(), HostError>;
    /// Sets a link administratively up or down.
    fn set_link_up(&self, link: &Link, up: bool) -> Result<(), HostError>;
    /// Reads a sysctl, `key` as under /proc/sys (e.g. `net/ipv4/ip_forward`).
    fn read_sysctl(&self, key: &str) -> Result<String, HostError>;
    /// Writes a sysctl.
    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError>;
}

/// A snapshot of the host: links and addresses read together.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every interface.
    pub links: Vec<Link>,
    /// Every address.
    pub addresses: Vec<HostAddr>,
}

impl Snapshot {
    /// Reads links and addresses from `host`.
    pub fn read(host: &impl Host) -> Result<Self, HostError> {
        Ok(Self {
            links: host.links()?,
            addresses: host.addresses()?,
        })
    }

    /// The interface named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The interface with index `index`.
    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    /// Every interface that has `addr`.
    pub fn holders(&self, addr: IpAddr) -> impl Iterator<Item = &HostAddr> {
        self.addresses.iter().filter(move |a| a.cidr.addr == addr)
    }

    /// True when `cidr` is on interface `index`.
    pub fn has(&self, index: u32, cidr: Cidr) -> bool {
        self.addresses
            .iter()
            .any(|a| a.ifindex == index && a.cidr == cidr)
    }
}
