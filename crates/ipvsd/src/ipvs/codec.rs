//! IPVS requests and replies as generic netlink messages: pure encoding and
//! decoding, no I/O. Integers in attributes are native-endian except where
//! the kernel says `be16`/`be32`: ports, IPv4 masks and addresses travel in
//! network order. Strings carry a trailing NUL.

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use neli::FromBytesWithInput;
use neli::ToBytes;
use neli::consts::nl::NlmF;
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, Nlattr, NlattrBuilder};
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::types::{Buffer, GenlBuffer};

use super::abi::{self, cmd, cmd_attr, daemon, dest, info, stats, svc};
use super::types::{
    Dest, DestEntry, Family, Forward, Info, Protocol, Service, ServiceEntry, ServiceKey, Stats,
    SyncDaemon, SyncRole, Timeouts, Tunnel,
};

/// A generic netlink message with IPVS commands and attributes.
pub type Genl = Genlmsghdr<u8, u16>;

/// A reply the codec cannot read; names what is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A required attribute is absent.
    #[error("IPVS reply: {what} has no {attr} attribute")]
    Missing {
        /// The object.
        what: &'static str,
        /// The attribute.
        attr: &'static str,
    },
    /// An attribute's bytes do not fit its type.
    #[error("IPVS reply: {what}: {detail}")]
    Malformed {
        /// The object.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Why a request could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building an IPVS netlink message: {0}")]
pub struct EncodeError(pub String);

fn enc<E: std::fmt::Display>(e: E) -> EncodeError {
    EncodeError(e.to_string())
}

/// A request ready to send: a command and its attributes, whether the
/// kernel answers with a multi-part dump, and whether it answers at all.
#[derive(Debug)]
pub struct Request {
    /// The generic netlink message.
    pub genl: Genl,
    /// True for dump requests (GET_* of many objects).
    pub dump: bool,
    /// True when the kernel answers with data (every GET); a request that
    /// only changes the table is answered with nothing but its ack, so in a
    /// batch it can go without one (an error still comes back).
    pub answers: bool,
}

fn attr<P: neli::Size + ToBytes>(
    kind: u16,
    payload: P,
) -> Result<Nlattr<u16, Buffer>, EncodeError> {
    NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(kind)
                .build()
                .map_err(enc)?,
        )
        .nla_payload(payload)
        .build()
        .map_err(enc)
}

fn nest(kind: u16, children: &[Nlattr<u16, Buffer>]) -> Result<Nlattr<u16, Buffer>, EncodeError> {
    let mut parent = NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(kind)
                .nla_nested(true)
                .build()
                .map_err(enc)?,
        )
        .nla_payload(Buffer::new())
        .build()
        .map_err(enc)?;
    for child in children {
        parent = parent.nest(child).map_err(enc)?;
    }
    Ok(parent)
}

fn message(
    command: u8,
    attrs: Vec<Nlattr<u16, Buffer>>,
    dump: bool,
) -> Result<Request, EncodeError> {
    let genl = GenlmsghdrBuilder::default()
        .cmd(command)
        .version(abi::VERSION)
        .attrs(attrs.into_iter().collect::<GenlBuffer<u16, Buffer>>())
        .build()
        .map_err(enc)?;
    // Named: the commands known to answer nothing but an ack. Anything else
    // (every GET, and any command added later) is assumed to answer.
    let answers = dump
        || !matches!(
            command,
            cmd::NEW_SERVICE
                | cmd::SET_SERVICE
                | cmd::DEL_SERVICE
                | cmd::NEW_DEST
                | cmd::SET_DEST
                | cmd::DEL_DEST
                | cmd::NEW_DAEMON
                | cmd::DEL_DAEMON
                | cmd::SET_CONFIG
                | cmd::SET_INFO
        );
    Ok(Request {
        genl,
        dump,
        answers,
    })
}

fn addr_bytes(addr: &IpAddr) -> Buffer {
    match addr {
        IpAddr::V4(a) => Buffer::from(a.octets().to_vec()),
        IpAddr::V6(a) => Buffer::from(a.octets().to_vec()),
    }
}

fn af(family: Family) -> u16 {
    match family {
        Family::V4 => abi::af::INET,
        Family::V6 => abi::af::INET6,
    }
}

fn protocol_number(protocol: Protocol) -> u16 {
    match protocol {
        Protocol::Tcp => abi::proto::TCP,
        Protocol::Udp => abi::proto::UDP,
        Protocol::Sctp => abi::proto::SCTP,
    }
}

fn port(p: u16) -> Buffer {
    Buffer::from(p.to_be_bytes().to_vec())
}

/// The attributes that name a service (AF, and protocol/addr/port or fwmark).
fn key_attrs(key: &ServiceKey) -> Result<Vec<Nlattr<u16, Buffer>>, EncodeError> {
    let mut attrs = vec![attr(svc::AF, af(key.family()))?];
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port: p,
        } => {
            attrs.push(attr(svc::PROTOCOL, protocol_number(*protocol))?);
            attrs.push(attr(svc::ADDR, addr_bytes(addr))?);
            attrs.push(attr(svc::PORT, port(*p))?);
        }
        ServiceKey::Fwmark { mark, .. } => attrs.push(attr(svc::FWMARK, *mark)?),
    }
    Ok(attrs)
}

fn service_attr(service: &Service) -> Result<Nlattr<u16, Buffer>, EncodeError> {
    let mut attrs = key_attrs(&service.key)?;
    attrs.push(attr(svc::SCHED_NAME, service.scheduler.as_str())?);
    if let Some(pe) = &service.pe_name {
        attrs.push(attr(svc::PE_NAME, pe.as_str())?);
    }
    // struct ip_vs_flags { flags, mask }: every bit is set as given.
    let mut flags = service.flags.to_ne_bytes().to_vec();
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    attrs.push(attr(svc::FLAGS, Buffer::from(flags))?);
    attrs.push(attr(svc::TIMEOUT, service.timeout)?);
    attrs.push(attr(
        svc::NETMASK,
        Buffer::from(netmask_bytes(service.key.family(), service.netmask).to_vec()),
    )?);
    nest(cmd_attr::SERVICE, &attrs)
}

/// The persistence netmask's bytes: IPv4 carries the mask in network order
/// (`__be32`); IPv6 carries the prefix length, which the kernel compares as
/// a host-order number (1..=128).
fn netmask_bytes(family: Family, netmask: u32) -> [u8; 4] {
    match family {
        Family::V4 => netmask.to_be_bytes(),
        Family::V6 => netmask.to_ne_bytes(),
    }
}

fn forward_bits(forward: Forward) -> u32 {
    match forward {
        Forward::Masq => abi::fwd::MASQ,
        Forward::Local => abi::fwd::LOCALNODE,
        Forward::Tunnel => abi::fwd::TUNNEL,
        Forward::Route => abi::fwd::DROUTE,
        Forward::Bypass => abi::fwd::BYPASS,
    }
}

fn dest_attr(d: &Dest) -> Result<Nlattr<u16, Buffer>, EncodeError> {
    let mut attrs = vec![
        attr(dest::ADDR_FAMILY, af(Family::of(&d.addr)))?,
        attr(dest::ADDR, addr_bytes(&d.addr))?,
        attr(dest::PORT, port(d.port))?,
        attr(dest::FWD_METHOD, forward_bits(d.forward))?,
        attr(dest::WEIGHT, d.weight)?,
        attr(dest::U_THRESH, d.upper)?,
        attr(dest::L_THRESH, d.lower)?,
    ];
    if d.forward == Forward::Tunnel {
        let (kind, tun_port, flags) = match d.tunnel {
            Tunnel::Ipip => (abi::tun_type::IPIP, 0, 0),
            Tunnel::Gue { port, flags } => (abi::tun_type::GUE, port, flags),
            Tunnel::Gre { flags } => (abi::tun_type::GRE, 0, flags),
        };
        // Only sent for GUE/GRE, so kernels older than 5.3 keep accepting IPIP.
        if kind != abi::tun_type::IPIP {
            attrs.push(attr(dest::TUN_TYPE, kind)?);
            attrs.push(attr(dest::TUN_PORT, port(tun_port))?);
            attrs.push(attr(dest::TUN_FLAGS, flags)?);
        }
    }
    nest(cmd_attr::DEST, &attrs)
}

fn dest_key_attr(addr: &IpAddr, p: u16) -> Result<Nlattr<u16, Buffer>, EncodeError> {
    nest(
        cmd_attr::DEST,
        &[
            attr(dest::ADDR_FAMILY, af(Family::of(addr)))?,
            attr(dest::ADDR, addr_bytes(addr))?,
            attr(dest::PORT, port(p))?,
        ],
    )
}

/// `ipvsadm -A`: add a virtual service.
pub fn new_service(service: &Service) -> Result<Request, EncodeError> {
    message(cmd::NEW_SERVICE, vec![service_attr(service)?], false)
}

/// `ipvsadm -E`: change a virtual service's settings.
pub fn set_service(service: &Service) -> Result<Request, EncodeError> {
    message(cmd::SET_SERVICE, vec![service_attr(service)?], false)
}

/// `ipvsadm -D`: delete a virtual service (and its real servers).
pub fn del_service(key: &ServiceKey) -> Result<Request, EncodeError> {
    message(
        cmd::DEL_SERVICE,
        vec![nest(cmd_attr::SERVICE, &key_attrs(key)?)?],
        false,
    )
}

/// `ipvsadm -a`: add a real server to a service.
pub fn new_dest(key: &ServiceKey, d: &Dest) -> Result<Request, EncodeError> {
    let svc = nest(cmd_attr::SERVICE, &key_attrs(key)?)?;
    message(cmd::NEW_DEST, vec![svc, dest_attr(d)?], false)
}

/// `ipvsadm -e`: change a real server's settings.
pub fn set_dest(key: &ServiceKey, d: &Dest) -> Result<Request, EncodeError> {
    let svc = nest(cmd_attr::SERVICE, &key_attrs(key)?)?;
    message(cmd::SET_DEST, vec![svc, dest_attr(d)?], false)
}

/// `ipvsadm -d`: remove a real server from a service.
pub fn del_dest(key: &ServiceKey, addr: &IpAddr, p: u16) -> Result<Request, EncodeError> {
    let svc = nest(cmd_attr::SERVICE, &key_attrs(key)?)?;
    message(cmd::DEL_DEST, vec![svc, dest_key_attr(addr, p)?], false)
}

/// Dump every virtual service.
pub fn get_services() -> Result<Request, EncodeError> {
    message(cmd::GET_SERVICE, Vec::new(), true)
}

/// Dump the real servers of one service.
pub fn get_dests(key: &ServiceKey) -> Result<Request, EncodeError> {
    message(
        cmd::GET_DEST,
        vec![nest(cmd_attr::SERVICE, &key_attrs(key)?)?],
        true,
    )
}

/// The IPVS version and connection table size.
pub fn get_info() -> Result<Request, EncodeError> {
    message(cmd::GET_INFO, Vec::new(), false)
}

/// The connection timeouts.
pub fn get_config() -> Result<Request, EncodeError> {
    message(cmd::GET_CONFIG, Vec::new(), false)
}

/// `ipvsadm --set`: change connection timeouts (0 leaves one unchanged).
pub fn set_config(t: &Timeouts) -> Result<Request, EncodeError> {
    let attrs = vec![
        attr(cmd_attr::TIMEOUT_TCP, t.tcp)?,
        attr(cmd_attr::TIMEOUT_TCP_FIN, t.tcp_fin)?,
        attr(cmd_attr::TIMEOUT_UDP, t.udp)?,
    ];
    message(cmd::SET_CONFIG, attrs, false)
}

fn role_bits(role: SyncRole) -> u32 {
    match role {
        SyncRole::Master => abi::sync_state::MASTER,
        SyncRole::Backup => abi::sync_state::BACKUP,
    }
}

/// `ipvsadm --start-daemon`: start a connection-sync daemon.
pub fn new_daemon(d: &SyncDaemon) -> Result<Request, EncodeError> {
    let mut attrs = vec![
        attr(daemon::STATE, role_bits(d.role))?,
        attr(daemon::MCAST_IFN, d.ifname.as_str())?,
        attr(daemon::SYNC_ID, d.sync_id)?,
    ];
    if let Some(len) = d.max_len {
        attrs.push(attr(daemon::SYNC_MAXLEN, len)?);
    }
    match d.group {
        Some(IpAddr::V4(g)) => attrs.push(attr(
            daemon::MCAST_GROUP,
            Buffer::from(g.octets().to_vec()),
        )?),
        Some(IpAddr::V6(g)) => attrs.push(attr(
            daemon::MCAST_GROUP6,
            Buffer::from(g.octets().to_vec()),
        )?),
        None => {}
    }
    if let Some(p) = d.port {
        attrs.push(attr(daemon::MCAST_PORT, p)?);
    }
    if let Some(ttl) = d.ttl {
        attrs.push(attr(daemon::MCAST_TTL, ttl)?);
    }
    message(
        cmd::NEW_DAEMON,
        vec![nest(cmd_attr::DAEMON, &attrs)?],
        false,
    )
}

/// `ipvsadm --stop-daemon`: stop the master or backup sync daemon.
pub fn del_daemon(role: SyncRole) -> Result<Request, EncodeError> {
    let state = nest(cmd_attr::DAEMON, &[attr(daemon::STATE, role_bits(role))?])?;
    message(cmd::DEL_DAEMON, vec![state], false)
}

/// Dump the running sync daemons.
pub fn get_daemons() -> Result<Request, EncodeError> {
    message(cmd::GET_DAEMON, Vec::new(), true)
}

/// The generic netlink controller's family id (`GENL_ID_CTRL`).
pub const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// Asks the controller for the id of family `name` (send to [`GENL_ID_CTRL`]).
pub fn get_family(name: &str) -> Result<Request, EncodeError> {
    let genl = GenlmsghdrBuilder::default()
        .cmd(CTRL_CMD_GETFAMILY)
        .version(2)
        .attrs(
            std::iter::once(attr(CTRL_ATTR_FAMILY_NAME, name)?)
                .collect::<GenlBuffer<u16, Buffer>>(),
        )
        .build()
        .map_err(enc)?;
    Ok(Request {
        genl,
        dump: false,
        answers: true,
    })
}

/// Reads the family id from the controller's reply.
pub fn parse_family_id(genl: &Genl) -> Result<u16, DecodeError> {
    required(
        u16_of("family", &top(genl)?, CTRL_ATTR_FAMILY_ID)?,
        "family",
        "CTRL_ATTR_FAMILY_ID",
    )
}

/// Wraps `req` in a netlink header for family `family_id` with sequence `seq`.
/// The netlink message of `req`; with `ack`, the kernel acknowledges it
/// (without, it answers only an error).
pub fn frame(
    req: Request,
    family_id: u16,
    seq: u32,
    ack: bool,
) -> Result<Nlmsghdr<u16, Genl>, EncodeError> {
    let mut flags = NlmF::REQUEST;
    if ack {
        flags |= NlmF::ACK;
    }
    if req.dump {
        flags |= NlmF::DUMP;
    }
    NlmsghdrBuilder::default()
        .nl_type(family_id)
        .nl_flags(flags)
        .nl_seq(seq)
        .nl_pid(0)
        .nl_payload(NlPayload::Payload(req.genl))
        .build()
        .map_err(enc)
}

/// Appends the wire bytes of `msg` to `out`.
pub fn write(msg: &Nlmsghdr<u16, Genl>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut cursor = Cursor::new(std::mem::take(out));
    cursor.set_position(cursor.get_ref().len() as u64);
    msg.to_bytes(&mut cursor).map_err(enc)?;
    *out = cursor.into_inner();
    Ok(())
}

// ---- decoding ----

type Attrs<'a> = neli::genl::GenlAttrHandle<'a, u16>;

/// Parses a generic netlink payload (the bytes after the netlink header).
pub fn parse_genl(bytes: &[u8]) -> Result<Genl, DecodeError> {
    Genl::from_bytes_with_input(&mut Cursor::new(bytes), bytes.len()).map_err(|e| {
        DecodeError::Malformed {
            what: "message",
            detail: e.to_string(),
        }
    })
}

fn raw<'a>(attrs: &'a Attrs<'_>, kind: u16) -> Option<&'a [u8]> {
    attrs.get_attribute(kind).map(|a| a.nla_payload().as_ref())
}

fn u32_of(what: &'static str, attrs: &Attrs<'_>, kind: u16) -> Result<Option<u32>, DecodeError> {
    raw(attrs, kind)
        .map(|b| {
            b.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .ok_or_else(|| DecodeError::Malformed {
                    what,
                    detail: format!("attribute {kind}: {} bytes, expected 4", b.len()),
                })
        })
        .transpose()
}

fn u16_of(what: &'static str, attrs: &Attrs<'_>, kind: u16) -> Result<Option<u16>, DecodeError> {
    raw(attrs, kind)
        .map(|b| {
            b.get(..2)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_ne_bytes)
                .ok_or_else(|| DecodeError::Malformed {
                    what,
                    detail: format!("attribute {kind}: {} bytes, expected 2", b.len()),
                })
        })
        .transpose()
}

fn be16_of(what: &'static str, attrs: &Attrs<'_>, kind: u16) -> Result<Option<u16>, DecodeError> {
    Ok(u16_of(what, attrs, kind)?.map(|v| u16::from_be_bytes(v.to_ne_bytes())))
}

fn string_of(attrs: &Attrs<'_>, kind: u16) -> Option<String> {
    raw(attrs, kind).map(|b| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    })
}

fn addr_of(what: &'static str, bytes: &[u8], family: u16) -> Result<IpAddr, DecodeError> {
    let bad = || DecodeError::Malformed {
        what,
        detail: format!("address of {} bytes for family {family}", bytes.len()),
    };
    match family {
        abi::af::INET => {
            let b: [u8; 4] = bytes
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            Ok(IpAddr::V4(Ipv4Addr::from(b)))
        }
        abi::af::INET6 => {
            let b: [u8; 16] = bytes
                .get(..16)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => Err(bad()),
    }
}

fn required<T>(value: Option<T>, what: &'static str, attr: &'static str) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::Missing { what, attr })
}

fn nested<'a>(
    what: &'static str,
    attrs: &'a Attrs<'_>,
    kind: u16,
) -> Result<Option<Attrs<'a>>, DecodeError> {
    match attrs.get_attribute(kind) {
        None => Ok(None),
        Some(a) => a
            .get_attr_handle::<u16>()
            .map(Some)
            .map_err(|e| DecodeError::Malformed {
                what,
                detail: e.to_string(),
            }),
    }
}

fn stats_of(attrs: &Attrs<'_>, stats64: u16, stats32: u16) -> Result<Stats, DecodeError> {
    let (nested_attrs, wide) = match nested("stats", attrs, stats64)? {
        Some(n) => (n, true),
        None => match nested("stats", attrs, stats32)? {
            Some(n) => (n, false),
            None => return Ok(Stats::default()),
        },
    };
    let get = |kind: u16| -> Result<u64, DecodeError> {
        let Some(b) = raw(&nested_attrs, kind) else {
            return Ok(0);
        };
        let bad = || DecodeError::Malformed {
            what: "stats",
            detail: format!("counter {kind}: {} bytes", b.len()),
        };
        // 32-bit stats carry u32 counters except bytes, which are u64.
        if wide || b.len() == 8 {
            b.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
                .ok_or_else(bad)
        } else {
            b.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(|b| u64::from(u32::from_ne_bytes(b)))
                .ok_or_else(bad)
        }
    };
    Ok(Stats {
        conns: get(stats::CONNS)?,
        inpkts: get(stats::INPKTS)?,
        outpkts: get(stats::OUTPKTS)?,
        inbytes: get(stats::INBYTES)?,
        outbytes: get(stats::OUTBYTES)?,
        cps: get(stats::CPS)?,
        inpps: get(stats::INPPS)?,
        outpps: get(stats::OUTPPS)?,
        inbps: get(stats::INBPS)?,
        outbps: get(stats::OUTBPS)?,
    })
}

fn top(genl: &Genl) -> Result<Attrs<'_>, DecodeError> {
    Ok(genl.attrs().get_attr_handle())
}

/// Reads one service from a GET_SERVICE reply.
pub fn parse_service(genl: &Genl) -> Result<ServiceEntry, DecodeError> {
    const WHAT: &str = "service";
    let top_attrs = top(genl)?;
    let s = required(
        nested(WHAT, &top_attrs, cmd_attr::SERVICE)?,
        WHAT,
        "IPVS_CMD_ATTR_SERVICE",
    )?;
    let family = required(u16_of(WHAT, &s, svc::AF)?, WHAT, "AF")?;
    let key = match u32_of(WHAT, &s, svc::FWMARK)? {
        Some(mark) if mark != 0 => ServiceKey::Fwmark {
            family: if family == abi::af::INET6 {
                Family::V6
            } else {
                Family::V4
            },
            mark,
        },
        _ => {
            let protocol = match required(u16_of(WHAT, &s, svc::PROTOCOL)?, WHAT, "PROTOCOL")? {
                abi::proto::TCP => Protocol::Tcp,
                abi::proto::UDP => Protocol::Udp,
                abi::proto::SCTP => Protocol::Sctp,
                other => {
                    return Err(DecodeError::Malformed {
                        what: WHAT,
                        detail: format!("unknown protocol {other}"),
                    });
                }
            };
            let addr = addr_of(WHAT, required(raw(&s, svc::ADDR), WHAT, "ADDR")?, family)?;
            let port = required(be16_of(WHAT, &s, svc::PORT)?, WHAT, "PORT")?;
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            }
        }
    };
    let flags = raw(&s, svc::FLAGS)
        .and_then(|b| b.get(..4))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0);
    let netmask = raw(&s, svc::NETMASK)
        .and_then(|b| b.get(..4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| match key.family() {
            Family::V4 => u32::from_be_bytes(b),
            Family::V6 => u32::from_ne_bytes(b),
        });
    Ok(ServiceEntry {
        service: Service {
            key,
            scheduler: string_of(&s, svc::SCHED_NAME).unwrap_or_default(),
            flags: flags & !abi::svc_flag::HASHED,
            timeout: u32_of(WHAT, &s, svc::TIMEOUT)?.unwrap_or(0),
            netmask,
            pe_name: string_of(&s, svc::PE_NAME).filter(|p| !p.is_empty()),
        },
        stats: stats_of(&s, svc::STATS64, svc::STATS)?,
    })
}

/// Reads one real server from a GET_DEST reply; `family` is the service's,
/// used when the kernel is too old to send the destination's own family.
pub fn parse_dest(genl: &Genl, family: Family) -> Result<DestEntry, DecodeError> {
    const WHAT: &str = "real server";
    let top_attrs = top(genl)?;
    let d = required(
        nested(WHAT, &top_attrs, cmd_attr::DEST)?,
        WHAT,
        "IPVS_CMD_ATTR_DEST",
    )?;
    let af = u16_of(WHAT, &d, dest::ADDR_FAMILY)?.unwrap_or(match family {
        Family::V4 => abi::af::INET,
        Family::V6 => abi::af::INET6,
    });
    let addr = addr_of(WHAT, required(raw(&d, dest::ADDR), WHAT, "ADDR")?, af)?;
    let forward =
        match required(u32_of(WHAT, &d, dest::FWD_METHOD)?, WHAT, "FWD_METHOD")? & abi::fwd::MASK {
            abi::fwd::MASQ => Forward::Masq,
            abi::fwd::LOCALNODE => Forward::Local,
            abi::fwd::TUNNEL => Forward::Tunnel,
            abi::fwd::DROUTE => Forward::Route,
            _ => Forward::Bypass,
        };
    let tun_flags = u16_of(WHAT, &d, dest::TUN_FLAGS)?.unwrap_or(0);
    let tunnel = match raw(&d, dest::TUN_TYPE).and_then(|b| b.first().copied()) {
        Some(abi::tun_type::GUE) => Tunnel::Gue {
            port: be16_of(WHAT, &d, dest::TUN_PORT)?.unwrap_or(0),
            flags: tun_flags,
        },
        Some(abi::tun_type::GRE) => Tunnel::Gre { flags: tun_flags },
        _ => Tunnel::Ipip,
    };
    let weight = u32_of(WHAT, &d, dest::WEIGHT)?.unwrap_or(0);
    Ok(DestEntry {
        dest: Dest {
            addr,
            port: required(be16_of(WHAT, &d, dest::PORT)?, WHAT, "PORT")?,
            forward,
            tunnel,
            weight: i32::from_ne_bytes(weight.to_ne_bytes()),
            upper: u32_of(WHAT, &d, dest::U_THRESH)?.unwrap_or(0),
            lower: u32_of(WHAT, &d, dest::L_THRESH)?.unwrap_or(0),
        },
        active_conns: u32_of(WHAT, &d, dest::ACTIVE_CONNS)?.unwrap_or(0),
        inact_conns: u32_of(WHAT, &d, dest::INACT_CONNS)?.unwrap_or(0),
        persist_conns: u32_of(WHAT, &d, dest::PERSIST_CONNS)?.unwrap_or(0),
        stats: stats_of(&d, dest::STATS64, dest::STATS)?,
    })
}

/// Reads a GET_INFO reply.
pub fn parse_info(genl: &Genl) -> Result<Info, DecodeError> {
    const WHAT: &str = "info";
    let a = top(genl)?;
    Ok(Info {
        version: required(u32_of(WHAT, &a, info::VERSION)?, WHAT, "VERSION")?,
        conn_tab_size: u32_of(WHAT, &a, info::CONN_TAB_SIZE)?.unwrap_or(0),
    })
}

/// Reads a GET_CONFIG reply.
pub fn parse_config(genl: &Genl) -> Result<Timeouts, DecodeError> {
    const WHAT: &str = "timeouts";
    let a = top(genl)?;
    Ok(Timeouts {
        tcp: u32_of(WHAT, &a, cmd_attr::TIMEOUT_TCP)?.unwrap_or(0),
        tcp_fin: u32_of(WHAT, &a, cmd_attr::TIMEOUT_TCP_FIN)?.unwrap_or(0),
        udp: u32_of(WHAT, &a, cmd_attr::TIMEOUT_UDP)?.unwrap_or(0),
    })
}

/// Reads one sync daemon from a GET_DAEMON reply.
pub fn parse_daemon(genl: &Genl) -> Result<SyncDaemon, DecodeError> {
    const WHAT: &str = "sync daemon";
    let top_attrs = top(genl)?;
    let d = required(
        nested(WHAT, &top_attrs, cmd_attr::DAEMON)?,
        WHAT,
        "IPVS_CMD_ATTR_DAEMON",
    )?;
    let role = match required(u32_of(WHAT, &d, daemon::STATE)?, WHAT, "STATE")? {
        abi::sync_state::MASTER => SyncRole::Master,
        _ => SyncRole::Backup,
    };
    let group = match (raw(&d, daemon::MCAST_GROUP), raw(&d, daemon::MCAST_GROUP6)) {
        (Some(b), _) => Some(addr_of(WHAT, b, abi::af::INET)?),
        (None, Some(b)) => Some(addr_of(WHAT, b, abi::af::INET6)?),
        (None, None) => None,
    };
    Ok(SyncDaemon {
        role,
        ifname: string_of(&d, daemon::MCAST_IFN).unwrap_or_default(),
        sync_id: u32_of(WHAT, &d, daemon::SYNC_ID)?.unwrap_or(0),
        max_len: u16_of(WHAT, &d, daemon::SYNC_MAXLEN)?,
        group,
        port: u16_of(WHAT, &d, daemon::MCAST_PORT)?,
        ttl: raw(&d, daemon::MCAST_TTL).and_then(|b| b.first().copied()),
    })
}

#[cfg(test)]
mod tests;
