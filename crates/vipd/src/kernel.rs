//! [`Kernel`]: [`Host`] over rtnetlink (neli) and /proc/sys, in the
//! network namespace vipd runs in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Arphrd, Ifa, IfaF, Iff, Ifla, RtAddrFamily, RtScope, Rtm};
use neli::consts::socket::NlFamily;
use neli::err::RouterError;
use neli::nl::NlPayload;
use neli::router::synchronous::NlRouter;
use neli::rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, RtattrBuilder};
use neli::types::{Buffer, RtBuffer};
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};

use crate::host::{Host, HostAddr, HostError, Link, TANDEM_ADDR_PROTO};
use crate::vip::Cidr;

/// `IFA_PROTO` (include/uapi/linux/if_addr.h); neli 0.7 has no name for it.
const IFA_PROTO: u16 = 11;
/// `IFA_F_NODAD`, in the 32-bit `IFA_FLAGS` attribute.
const IFA_F_NODAD: u32 = 0x02;

/// The host's kernel, through one rtnetlink socket.
pub struct Kernel {
    rtnl: NlRouter,
    proc_sys: PathBuf,
}

impl Kernel {
    /// Opens the rtnetlink socket.
    pub fn open() -> Result<Self, HostError> {
        let (rtnl, _) = NlRouter::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| HostError::new("opening an rtnetlink socket", e.to_string()))?;
        Ok(Self {
            rtnl,
            proc_sys: PathBuf::from("/proc/sys"),
        })
    }

    /// Sends one request and turns each reply's payload into a value with
    /// `each` (an acknowledged change has none).
    fn request<P, R>(
        &self,
        op: &str,
        kind: Rtm,
        flags: NlmF,
        msg: P,
        mut each: impl FnMut(&P) -> Result<Option<R>, HostError>,
    ) -> Result<Vec<R>, HostError>
    where
        P: Size + ToBytes + FromBytesWithInput<Input = usize> + std::fmt::Debug,
    {
        let replies = self
            .rtnl
            .send::<Rtm, P, Rtm, P>(kind, flags, NlPayload::Payload(msg))
            .map_err(|e| router_error(op, &e))?;
        let mut payloads = Vec::new();
        for reply in replies {
            let reply = reply.map_err(|e| router_error(op, &e))?;
            if let Some(value) = reply.get_payload().map(&mut each).transpose()?.flatten() {
                payloads.push(value);
            }
        }
        Ok(payloads)
    }

    /// A change the kernel acknowledges.
    fn change<P>(&self, op: &str, kind: Rtm, flags: NlmF, msg: P) -> Result<(), HostError>
    where
        P: Size + ToBytes + FromBytesWithInput<Input = usize> + std::fmt::Debug,
    {
        self.request(op, kind, flags | NlmF::ACK, msg, |_| Ok(None::<()>))
            .map(drop)
    }
}

fn router_error<T, P>(op: &str, e: &RouterError<T, P>) -> HostError
where
    RouterError<T, P>: std::fmt::Display,
{
    let errno = match e {
        RouterError::Nlmsgerr(m) => Some(m.error().abs()),
        _ => None,
    };
    HostError {
        op: op.to_owned(),
        detail: match errno {
            Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
            None => e.to_string(),
        },
        errno,
    }
}

fn build_error(op: &str, e: impl std::fmt::Display) -> HostError {
    HostError::new(op, format!("building the netlink message: {e}"))
}

impl Host for Kernel {
    fn links(&self) -> Result<Vec<Link>, HostError> {
        let op = "listing interfaces";
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .build()
            .map_err(|e| build_error(op, e))?;
        self.request(op, Rtm::Getlink, NlmF::DUMP, msg, |info: &Ifinfomsg| {
            let attrs = info.rtattrs().get_attr_handle();
            let name: String = attrs
                .get_attr_payload_as_with_len(Ifla::Ifname)
                .map_err(|e| HostError::new(op, format!("an interface without a name: {e}")))?;
            let mac = attrs
                .get_attribute(Ifla::Address)
                .filter(|_| *info.ifi_type() == Arphrd::Ether)
                .and_then(|a| <[u8; 6]>::try_from(a.rta_payload().as_ref()).ok());
            Ok(Some(Link {
                index: u32::try_from(*info.ifi_index()).unwrap_or(0),
                name,
                mac,
                up: info.ifi_flags().contains(Iff::UP),
                lower_up: info.ifi_flags().contains(Iff::LOWERUP),
            }))
        })
    }

    fn addresses(&self) -> Result<Vec<HostAddr>, HostError> {
        let op = "listing addresses";
        let msg = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Unspecified)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(0)
            .build()
            .map_err(|e| build_error(op, e))?;
        self.request(op, Rtm::Getaddr, NlmF::DUMP, msg, |m| Ok(parse_addr(m)))
    }

    fn add_address(&self, link: &Link, cidr: Cidr, label: Option<&str>) -> Result<(), HostError> {
        let op = format!("adding {cidr} to {}", link.name);
        let mut attrs = address_attrs(cidr).map_err(|e| build_error(&op, e))?;
        let extra = [
            (Ifa::UnrecognizedConst(IFA_PROTO), vec![TANDEM_ADDR_PROTO]),
            (
                Ifa::Flags,
                if cidr.addr.is_ipv6() { IFA_F_NODAD } else { 0 }
                    .to_ne_bytes()
                    .to_vec(),
            ),
        ];
        for (kind, payload) in extra {
            attrs.push(rtattr(kind, payload).map_err(|e| build_error(&op, e))?);
        }
        if let Some(label) = label {
            let mut bytes = label.as_bytes().to_vec();
            bytes.push(0);
            attrs.push(rtattr(Ifa::Label, bytes).map_err(|e| build_error(&op, e))?);
        }
        let msg = ifaddrmsg(link, cidr, attrs).map_err(|e| build_error(&op, e))?;
        self.change(&op, Rtm::Newaddr, NlmF::CREATE | NlmF::EXCL, msg)
    }

    fn del_address(&self, link: &Link, cidr: Cidr) -> Result<(), HostError> {
        let op = format!("removing {cidr} from {}", link.name);
        let attrs = address_attrs(cidr).map_err(|e| build_error(&op, e))?;
        let msg = ifaddrmsg(link, cidr, attrs).map_err(|e| build_error(&op, e))?;
        self.change(&op, Rtm::Deladdr, NlmF::empty(), msg)
    }

    fn set_link_up(&self, link: &Link, up: bool) -> Result<(), HostError> {
        let op = format!("setting {} {}", link.name, if up { "up" } else { "down" });
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(i32::try_from(link.index).unwrap_or(0))
            .ifi_flags(if up { Iff::UP } else { Iff::empty() })
            .ifi_change(Iff::UP)
            .build()
            .map_err(|e| build_error(&op, e))?;
        self.change(&op, Rtm::Setlink, NlmF::empty(), msg)
    }

    fn read_sysctl(&self, key: &str) -> Result<String, HostError> {
        let path = self.proc_sys.join(key);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| io_error(format!("reading {}", path.display()), &e))
    }

    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError> {
        let path = self.proc_sys.join(key);
        std::fs::write(&path, value)
            .map_err(|e| io_error(format!("writing {value} to {}", path.display()), &e))
    }
}

fn io_error(op: String, e: &std::io::Error) -> HostError {
    HostError {
        op,
        detail: e.to_string(),
        errno: e.raw_os_error(),
    }
}

fn rtattr(kind: Ifa, payload: Vec<u8>) -> Result<neli::rtnl::Rtattr<Ifa, Buffer>, String> {
    RtattrBuilder::default()
        .rta_type(kind)
        .rta_payload(payload)
        .build()
        .map_err(|e| e.to_string())
}

/// IFA_LOCAL and IFA_ADDRESS, both the address itself (as `ip addr` does).
fn address_attrs(cidr: Cidr) -> Result<Vec<neli::rtnl::Rtattr<Ifa, Buffer>>, String> {
    let bytes = match cidr.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    Ok(vec![
        rtattr(Ifa::Local, bytes.clone())?,
        rtattr(Ifa::Address, bytes)?,
    ])
}

fn ifaddrmsg(
    link: &Link,
    cidr: Cidr,
    attrs: Vec<neli::rtnl::Rtattr<Ifa, Buffer>>,
) -> Result<Ifaddrmsg, String> {
    let family = if cidr.addr.is_ipv4() {
        RtAddrFamily::Inet
    } else {
        RtAddrFamily::Inet6
    };
    IfaddrmsgBuilder::default()
        .ifa_family(family)
        .ifa_prefixlen(cidr.prefix)
        .ifa_flags(if cidr.addr.is_ipv6() {
            IfaF::NODAD
        } else {
            IfaF::empty()
        })
        .ifa_scope(RtScope::Universe)
        .ifa_index(link.index)
        .rtattrs(attrs.into_iter().collect::<RtBuffer<_, _>>())
        .build()
        .map_err(|e| e.to_string())
}

fn parse_addr(msg: &Ifaddrmsg) -> Option<HostAddr> {
    let attrs = msg.rtattrs().get_attr_handle();
    let raw = attrs
        .get_attribute(Ifa::Local)
        .or_else(|| attrs.get_attribute(Ifa::Address))?;
    let bytes = raw.rta_payload().as_ref();
    let addr = match *msg.ifa_family() {
        RtAddrFamily::Inet => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        RtAddrFamily::Inet6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    let label = attrs
        .get_attr_payload_as_with_len::<String>(Ifa::Label)
        .ok();
    let proto = attrs
        .get_attribute(Ifa::UnrecognizedConst(IFA_PROTO))
        .and_then(|a| a.rta_payload().as_ref().first().copied())
        .unwrap_or(0);
    Some(HostAddr {
        ifindex: *msg.ifa_index(),
        cidr: Cidr {
            addr,
            prefix: *msg.ifa_prefixlen(),
        },
        label,
        proto,
    })
}
