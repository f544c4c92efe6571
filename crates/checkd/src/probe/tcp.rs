//! `tcp`: a connect, and ldirectord's *negotiate* for plain-text protocols:
//! send bytes, then read until the reply contains what is expected (SMTP,
//! POP, IMAP and FTP banners).

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{ProbeError, io_error};
use crate::expect::Expect;

/// Most of a reply read while looking for the expected text.
const MAX_REPLY: usize = 65_536;

/// A TCP connection to `addr`, from `source` if given.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ProbeError> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ProbeError::Connect)?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(ProbeError::Connect)?;
    }
    // No TCP_NODELAY: every probe sends its request in one write.
    socket.connect(addr).await.map_err(ProbeError::Connect)
}

/// Connects; sends `send`; reads until `expect` is met.
pub async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    send: Option<&[u8]>,
    expect: Option<&Expect>,
) -> Result<(), ProbeError> {
    let mut stream = connect(addr, source).await?;
    if let Some(bytes) = send {
        stream.write_all(bytes).await.map_err(io_error("send"))?;
    }
    let Some(expect) = expect else {
        return Ok(());
    };
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while reply.len() < MAX_REPLY {
        let n = stream.read(&mut chunk).await.map_err(io_error("receive"))?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        if expect.matches(&reply) {
            return Ok(());
        }
    }
    Err(ProbeError::Reply {
        expected: expect.to_string(),
    })
}
