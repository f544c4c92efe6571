//! Announcement frames, byte for byte: gratuitous ARP (RFC 5227 §2.3,
//! request and reply forms) for IPv4 and the unsolicited neighbour
//! advertisement (RFC 4861 §7.2.6) for IPv6. Whole Ethernet frames, sent
//! as they are from a packet socket.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// ICMPv6 type of a neighbour advertisement.
pub const ICMPV6_NA: u8 = 136;

/// Which form of gratuitous ARP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOp {
    /// An ARP request for our own address (op 1, target hardware zero).
    Request,
    /// An ARP reply nobody asked for (op 2, target hardware ours).
    Reply,
}

/// Length of an ARP announcement frame (14 + 28 bytes).
pub const ARP_FRAME_LEN: usize = 42;
/// Length of an unsolicited NA frame (14 + 40 + 32 bytes).
pub const NA_FRAME_LEN: usize = 86;

fn ethernet(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// A gratuitous ARP for `ip` at `mac`, broadcast: sender and target
/// protocol address are both `ip`.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr, op: ArpOp) -> Vec<u8> {
    let mut f = Vec::with_capacity(ARP_FRAME_LEN);
    ethernet(&mut f, BROADCAST, mac, ETH_P_ARP);
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.extend_from_slice(&[6, 4]);
    let (code, target_mac) = match op {
        ArpOp::Request => (1u16, [0u8; 6]),
        ArpOp::Reply => (2u16, mac),
    };
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `target` at `mac`, from
/// `source` (the interface's link-local address) to all nodes (ff02::1),
/// hop limit 255, override flag set, solicited flag clear, router flag as
/// given, with the target link-layer address option.
pub fn unsolicited_na(mac: [u8; 6], source: Ipv6Addr, target: Ipv6Addr, router: bool) -> Vec<u8> {
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ICMPV6_NA, 0, 0, 0]); // type, code, checksum
    let flags = 0x20 | if router { 0x80 } else { 0 }; // O, and R when asked
    icmp.extend_from_slice(&[flags, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(source, ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(NA_FRAME_LEN);
    ethernet(&mut f, [0x33, 0x33, 0, 0, 0, 1], mac, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no class, no flow
    f.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // next header ICMPv6, hop limit 255
    f.extend_from_slice(&source.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `message` (its checksum field
/// zero) between `source` and `destination`.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + message.len());
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(message);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];

    #[test]
    fn gratuitous_arp_request_matches_the_rfc_layout() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(198, 51, 100, 10), ArpOp::Request);
        let expected: [u8; ARP_FRAME_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
            0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, // our MAC
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, // Ethernet, IPv4
            0x00, 0x01, // request
            0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 198, 51, 100, 10, // sender
            0, 0, 0, 0, 0, 0, 198, 51, 100, 10, // target: zero MAC, same IP
        ];
        assert_eq!(f, expected);
    }

    #[test]
    fn gratuitous_arp_reply_names_us_as_target_too() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(203, 0, 113, 7), ArpOp::Reply);
        assert_eq!(f.len(), ARP_FRAME_LEN);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[32..38], &MAC);
        assert_eq!(&f[28..32], &f[38..42]);
    }

    #[test]
    fn neighbour_advertisement_checksums_to_zero_and_carries_the_flags() {
        let src: Ipv6Addr = "fe80::5eff:fe00:5301".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        for router in [false, true] {
            let f = unsolicited_na(MAC, src, target, router);
            assert_eq!(f.len(), NA_FRAME_LEN);
            assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
            assert_eq!(&f[12..14], &[0x86, 0xdd]);
            assert_eq!(f[21], 255, "hop limit");
            let icmp = &f[54..];
            assert_eq!(icmp[0], ICMPV6_NA);
            assert_eq!(icmp[4], if router { 0xa0 } else { 0x20 });
            assert_eq!(&icmp[8..24], &target.octets());
            assert_eq!(&icmp[24..26], &[2, 1]);
            assert_eq!(&icmp[26..32], &MAC);
            // A correct checksum makes the sum over pseudo-header and
            // message (checksum included) come out as all ones.
            let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
            assert_eq!(icmpv6_checksum(src, all_nodes, icmp), 0);
        }
    }
}
