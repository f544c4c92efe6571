//! ICMP echo: one request, answered by the matching echo reply. Uses the
//! unprivileged ping socket where `net.ipv4.ping_group_range` allows it,
//! a raw socket (CAP_NET_RAW) otherwise. Replies are matched by the
//! sender (the socket is connected) and a per-request token in the payload.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const HEADER: usize = 8;

static TOKENS: AtomicU64 = AtomicU64::new(1);

/// Why an echo got no answer (a timeout is the caller's to apply).
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// No ICMP socket (no ping-group membership and no CAP_NET_RAW), or
    /// the source address is not this host's.
    #[error("opening an ICMP socket: {0}")]
    Open(#[source] io::Error),
    /// Sending or receiving failed (e.g. no route to the address).
    #[error("{stage}: {source}")]
    Io {
        /// "send" or "receive".
        stage: &'static str,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// Sends one echo request to `address` (from `source` if given) and
/// returns when the matching reply arrives. Wrap it in a timeout.
pub async fn echo(address: IpAddr, source: Option<IpAddr>) -> Result<(), EchoError> {
    let (socket, raw) = open(address, source).map_err(EchoError::Open)?;
    let token = TOKENS.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let request = echo_request(address.is_ipv4(), &token);
    socket
        .send(&request)
        .await
        .map_err(|source| EchoError::Io {
            stage: "send",
            source,
        })?;
    let mut buf = vec![0u8; 2048];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|source| EchoError::Io {
                stage: "receive",
                source,
            })?;
        let message = if raw && address.is_ipv4() {
            strip_ipv4_header(&buf[..n])
        } else {
            &buf[..n]
        };
        let reply_type = if address.is_ipv4() {
            ECHO_REPLY_V4
        } else {
            ECHO_REPLY_V6
        };
        if message.len() >= HEADER + token.len()
            && message[0] == reply_type
            && message[HEADER..HEADER + token.len()] == token
        {
            return Ok(());
        }
    }
}

/// A connected ICMP socket: ping socket if allowed, raw otherwise.
fn open(address: IpAddr, source: Option<IpAddr>) -> io::Result<(UdpSocket, bool)> {
    let (domain, protocol) = match address {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(socket) => (socket, false),
        // EACCES: this group may not use ping sockets (EPERM maps here too).
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            (Socket::new(domain, Type::RAW, Some(protocol))?, true)
        }
        Err(e) => return Err(e),
    };
    socket.set_nonblocking(true)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.connect(&SocketAddr::new(address, 0).into())?;
    Ok((UdpSocket::from_std(std::net::UdpSocket::from(socket))?, raw))
}

/// Type, code, checksum, identifier (the kernel sets it on a ping
/// socket), sequence, then the token.
fn echo_request(ipv4: bool, token: &[u8]) -> Vec<u8> {
    let kind = if ipv4 {
        ECHO_REQUEST_V4
    } else {
        ECHO_REQUEST_V6
    };
    let mut message = vec![kind, 0, 0, 0, 0x74, 0x64, 0, 1];
    message.extend_from_slice(token);
    if ipv4 {
        // ICMPv6 checksums cover a pseudo-header; the kernel fills them in.
        let sum = checksum(&message).to_be_bytes();
        message[2..4].copy_from_slice(&sum);
    }
    message
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

fn strip_ipv4_header(packet: &[u8]) -> &[u8] {
    let header = packet.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    packet.get(header..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let request = echo_request(true, &7u64.to_be_bytes());
        assert_eq!(request[0], ECHO_REQUEST_V4);
        assert_eq!(checksum(&request), 0, "a correct checksum sums to zero");
        // RFC 1071's example words.
        assert_eq!(
            !checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn raw_replies_lose_their_ip_header() {
        let mut packet = vec![0x45; 20];
        packet.extend_from_slice(&[ECHO_REPLY_V4, 0]);
        assert_eq!(strip_ipv4_header(&packet), [ECHO_REPLY_V4, 0]);
        assert!(strip_ipv4_header(&[0x4f]).is_empty());
    }
}
