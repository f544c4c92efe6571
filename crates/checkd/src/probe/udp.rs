//! `udp`: a datagram out, a reply back that must contain what is expected.
//! An ICMP port unreachable surfaces as "connection refused".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::{Dial, ProbeError, io_error};
use crate::expect::Expect;

/// A UDP socket connected as `dial` says.
pub async fn connect(dial: &Dial) -> Result<UdpSocket, ProbeError> {
    let local = dial.source.unwrap_or(match dial.addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(ProbeError::Connect)?;
    dial.mark(&socket)?;
    socket
        .connect(dial.addr)
        .await
        .map_err(ProbeError::Connect)?;
    Ok(socket)
}

/// Sends `send`; the first reply must satisfy `expect` (any reply if none).
pub async fn probe(dial: &Dial, send: &[u8], expect: Option<&Expect>) -> Result<(), ProbeError> {
    let socket = connect(dial).await?;
    socket.send(send).await.map_err(io_error("send"))?;
    let mut reply = vec![0u8; 65_536];
    let n = socket.recv(&mut reply).await.map_err(io_error("receive"))?;
    match expect {
        Some(expect) if !expect.matches(&reply[..n]) => Err(ProbeError::Reply {
            expected: expect.to_string(),
        }),
        _ => Ok(()),
    }
}
