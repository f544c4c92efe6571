//! What the kernel's IPVS table holds, as Rust types: virtual services, real
//! servers (destinations), their counters, and the global settings. These
//! are the domain model; `codec` maps them to and from netlink attributes.

use std::fmt;
use std::net::IpAddr;

/// The transport protocol of an address-based virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (`ipvsadm -t`).
    Tcp,
    /// UDP (`ipvsadm -u`).
    Udp,
    /// SCTP (`ipvsadm --sctp-service`).
    Sctp,
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        if addr.is_ipv4() { Self::V4 } else { Self::V6 }
    }
}

/// What identifies a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// Protocol, virtual address and port (`-t/-u/--sctp-service VIP:PORT`).
    Addr {
        /// The protocol.
        protocol: Protocol,
        /// The virtual address.
        addr: IpAddr,
        /// The port (0 only with persistence: all ports).
        port: u16,
    },
    /// A firewall mark (`-f MARK`), per address family.
    Fwmark {
        /// Family of the packets the mark selects.
        family: Family,
        /// The mark.
        mark: u32,
    },
}

impl ServiceKey {
    /// The address family of the service.
    pub fn family(&self) -> Family {
        match self {
            Self::Addr { addr, .. } => Family::of(addr),
            Self::Fwmark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr {
                protocol,
                addr,
                port,
            } => {
                let proto = match protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                    Protocol::Sctp => "SCTP",
                };
                match addr {
                    IpAddr::V4(a) => write!(f, "{proto} {a}:{port}"),
                    IpAddr::V6(a) => write!(f, "{proto} [{a}]:{port}"),
                }
            }
            Self::Fwmark { family, mark } => {
                let family = if *family == Family::V6 { " IPv6" } else { "" };
                write!(f, "FWM {mark}{family}")
            }
        }
    }
}

/// A virtual service's settings (what `ipvsadm -A/-E` sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Which service.
    pub key: ServiceKey,
    /// Scheduler name (`rr`, `wrr`, `lc`, `wlc`, `lblc`, `lblcr`, `dh`, `sh`,
    /// `sed`, `nq`, `fo`, `ovf`, `mh`, `twos`).
    pub scheduler: String,
    /// `IP_VS_SVC_F_*` flag bits as the kernel has them (persistent,
    /// one-packet, scheduler flags; the kernel's internal HASHED bit is
    /// dropped on read). Unknown bits are kept.
    pub flags: u32,
    /// Persistence timeout in seconds (meaningful with the persistent flag).
    pub timeout: u32,
    /// Persistence netmask: for IPv4 the mask (`0xffff_ffff` = /32), for
    /// IPv6 the prefix length (128).
    pub netmask: u32,
    /// Persistence engine name (e.g. `sip`), if any.
    pub pe_name: Option<String>,
}

/// How packets reach a real server (`-m`, `-g`, `-i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`-m`, masquerading).
    Masq,
    /// The director itself serves (local node).
    Local,
    /// IP-in-IP or GUE/GRE tunnel (`-i`).
    Tunnel,
    /// Direct routing (`-g`, the default).
    Route,
    /// Cache bypass.
    Bypass,
}

/// The tunnel encapsulation of a [`Forward::Tunnel`] destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// IP in IP (the default).
    Ipip,
    /// Generic UDP Encapsulation to a UDP port.
    Gue {
        /// Destination UDP port.
        port: u16,
        /// `IP_VS_TUNNEL_ENCAP_FLAG_*` bits.
        flags: u16,
    },
    /// GRE.
    Gre {
        /// `IP_VS_TUNNEL_ENCAP_FLAG_*` bits.
        flags: u16,
    },
}

/// A real server's settings (what `ipvsadm -a/-e` sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Forwarding method.
    pub forward: Forward,
    /// Tunnel encapsulation (only with [`Forward::Tunnel`]).
    pub tunnel: Tunnel,
    /// Weight (0 = no new connections).
    pub weight: i32,
    /// Upper connection threshold (0 = none).
    pub upper: u32,
    /// Lower connection threshold (0 = none).
    pub lower: u32,
}

/// Traffic counters of a service or real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
    /// Connections per second (kernel's estimate).
    pub cps: u64,
    /// Packets per second in.
    pub inpps: u64,
    /// Packets per second out.
    pub outpps: u64,
    /// Bytes per second in.
    pub inbps: u64,
    /// Bytes per second out.
    pub outbps: u64,
}

/// A real server as the kernel reports it: settings plus live state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestEntry {
    /// The settings.
    pub dest: Dest,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inact_conns: u32,
    /// Persistence templates.
    pub persist_conns: u32,
    /// Counters.
    pub stats: Stats,
}

/// A virtual service as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The settings.
    pub service: Service,
    /// Counters.
    pub stats: Stats,
}

/// `IPVS_CMD_GET_INFO`: the kernel's IPVS version and connection table size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Version code, e.g. 0x010201 for 1.2.1.
    pub version: u32,
    /// Connection hash table size.
    pub conn_tab_size: u32,
}

/// Connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`); 0 in a
/// request leaves that timeout unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Established TCP.
    pub tcp: u32,
    /// TCP after FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

/// The role of a connection-sync daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncRole {
    /// Sends connection state (the active director).
    Master,
    /// Receives it (the standby).
    Backup,
}

/// A connection-sync daemon (`ipvsadm --start-daemon`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Master or backup.
    pub role: SyncRole,
    /// Interface for the sync multicast.
    pub ifname: String,
    /// Sync id (0–255); both directors use the same.
    pub sync_id: u32,
    /// UDP payload size limit, if set.
    pub max_len: Option<u16>,
    /// Multicast group, if not the default 224.0.0.81.
    pub group: Option<IpAddr>,
    /// UDP port, if not the default 8848.
    pub port: Option<u16>,
    /// Multicast TTL, if set.
    pub ttl: Option<u8>,
}
