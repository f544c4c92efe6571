//! What a configured address is: an IP with its prefix length ([`Cidr`]),
//! the interface it goes on and its optional IPv4 label ([`VipSpec`]),
//! and the rules an address must follow before anything touches the host.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// The longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// An address with its prefix length, as `ip addr` writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl Cidr {
    /// A host route's worth: /32 or /128.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }
}

/// Why an address or interface name cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipError {
    /// Not `ADDRESS/PREFIX`.
    #[error("'{0}' is not ADDRESS/PREFIX (for example 198.51.100.10/24)")]
    NotCidr(String),
    /// The prefix is too long for the family.
    #[error("prefix /{prefix} is too long for {family} (at most /{max})")]
    PrefixTooLong {
        /// The prefix given.
        prefix: u8,
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// The longest allowed.
        max: u8,
    },
    /// An address no host can serve as a VIP.
    #[error("{addr} cannot be a virtual address ({why})")]
    NotUnicast {
        /// The address.
        addr: IpAddr,
        /// What kind of address it is.
        why: &'static str,
    },
    /// An interface name the kernel would refuse.
    #[error("'{0}' is not an interface name (1 to 15 bytes, no '/', ':' or whitespace)")]
    BadInterface(String),
    /// A label on an IPv6 address (the kernel keeps labels for IPv4 only).
    #[error("labels exist for IPv4 addresses only")]
    LabelOnIpv6,
    /// A label that does not start with its interface's name.
    #[error(
        "label '{label}' must start with the interface name '{interface}' (e.g. {interface}:vip) and be at most 15 bytes"
    )]
    BadLabel {
        /// The label.
        label: String,
        /// The interface.
        interface: String,
    },
}

impl FromStr for Cidr {
    type Err = VipError;

    fn from_str(s: &str) -> Result<Self, VipError> {
        let not = || VipError::NotCidr(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(not)?;
        let addr: IpAddr = addr.parse().map_err(|_| not())?;
        let prefix: u8 = prefix.parse().map_err(|_| not())?;
        let (family, max) = match addr {
            IpAddr::V4(_) => ("IPv4", 32),
            IpAddr::V6(_) => ("IPv6", 128),
        };
        if prefix > max {
            return Err(VipError::PrefixTooLong {
                prefix,
                family,
                max,
            });
        }
        check_unicast(addr)?;
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Refuses addresses that cannot be a service address.
pub fn check_unicast(addr: IpAddr) -> Result<(), VipError> {
    let why = match addr {
        a if a.is_unspecified() => Some("unspecified"),
        a if a.is_loopback() => Some("loopback"),
        a if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_broadcast() => Some("broadcast"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local"),
        _ => None,
    };
    match why {
        Some(why) => Err(VipError::NotUnicast { addr, why }),
        None => Ok(()),
    }
}

/// Refuses a name the kernel would not take for an interface.
pub fn check_interface(name: &str) -> Result<(), VipError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(VipError::BadInterface(name.to_owned()))
    }
}

/// One director VIP from the config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VipSpec {
    /// The address and prefix, e.g. `198.51.100.10/24`.
    pub address: Cidr,
    /// The interface it goes on, e.g. `eth0`. Announcements go out on
    /// this interface only.
    pub interface: String,
    /// IPv4 only: the label `ip addr` shows (ifconfig's alias), e.g.
    /// `eth0:vip`.
    pub label: Option<String>,
}

impl VipSpec {
    /// Checks the interface name and the label against the address.
    pub fn validate(&self) -> Result<(), (&'static str, VipError)> {
        check_interface(&self.interface).map_err(|e| ("interface", e))?;
        if let Some(label) = &self.label {
            if self.address.addr.is_ipv6() {
                return Err(("label", VipError::LabelOnIpv6));
            }
            if !label.starts_with(&self.interface) || label.len() > MAX_IFNAME {
                return Err((
                    "label",
                    VipError::BadLabel {
                        label: label.clone(),
                        interface: self.interface.clone(),
                    },
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_print_as_ip_addr_writes_them() {
        for s in ["198.51.100.10/24", "203.0.113.5/32", "2001:db8::10/64"] {
            assert_eq!(s.parse::<Cidr>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_cidrs_say_what_is_wrong() {
        let cases = [
            ("198.51.100.10", "not ADDRESS/PREFIX"),
            ("198.51.100.10/33", "/33 is too long for IPv4"),
            ("2001:db8::1/129", "/129 is too long for IPv6"),
            ("0.0.0.0/0", "unspecified"),
            ("127.0.0.2/8", "loopback"),
            ("224.0.0.1/32", "multicast"),
            ("fe80::1/64", "link-local"),
            ("eth0/24", "not ADDRESS/PREFIX"),
        ];
        for (input, expected) in cases {
            let e = input.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(expected), "{input}: {e}");
        }
    }

    #[test]
    fn labels_must_start_with_the_interface_and_be_ipv4() {
        let spec = |address: &str, label: &str| VipSpec {
            address: address.parse().unwrap(),
            interface: "eth0".into(),
            label: Some(label.into()),
        };
        assert!(spec("198.51.100.10/24", "eth0:vip").validate().is_ok());
        assert_eq!(
            spec("198.51.100.10/24", "eth1:vip")
                .validate()
                .unwrap_err()
                .0,
            "label"
        );
        assert_eq!(
            spec("198.51.100.10/24", "eth0:much-too-long")
                .validate()
                .unwrap_err()
                .0,
            "label"
        );
        assert_eq!(
            spec("2001:db8::10/64", "eth0:vip")
                .validate()
                .unwrap_err()
                .1,
            VipError::LabelOnIpv6
        );
    }

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for good in ["eth0", "lo", "tunl0", "bond0.100", "enp0s31f6"] {
            assert!(check_interface(good).is_ok(), "{good}");
        }
        for bad in ["", "eth0:1", "a/b", "with space", "sixteen-bytes-xx", ".."] {
            assert!(check_interface(bad).is_err(), "{bad}");
        }
    }
}
