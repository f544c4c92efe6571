//! `tcp`: a connect, and ldirectord's *negotiate* for plain-text protocols:
//! send bytes, then read until the reply contains what is expected (SMTP,
//! POP, IMAP and FTP banners).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{Dial, ProbeError, io_error};
use crate::expect::Expect;

/// Most of a reply read while looking for the expected text.
const MAX_REPLY: usize = 65_536;

/// A TCP connection as `dial` says.
pub async fn connect(dial: &Dial) -> Result<TcpStream, ProbeError> {
    let socket = match dial.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ProbeError::Connect)?;
    dial.mark(&socket)?;
    if dial.mark.is_some() {
        // A through-VIP probe ends with a reset, not a FIN: IPVS then holds
        // its connection entry in CLOSE, which a new SYN from the same
        // source port reschedules by mark. After a FIN the entry would wait
        // for the server to close too (minutes, for a hung one: CLOSE_WAIT)
        // and take a later probe reusing the port to this probe's real,
        // whatever that probe's mark says.
        socket
            .set_zero_linger()
            .map_err(io_error("set SO_LINGER"))?;
    }
    if let Some(source) = dial.source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(ProbeError::Connect)?;
    }
    // No TCP_NODELAY: every probe sends its request in one write.
    socket.connect(dial.addr).await.map_err(ProbeError::Connect)
}

/// Connects; sends `send`; reads until `expect` is met.
pub async fn probe(
    dial: &Dial,
    send: Option<&[u8]>,
    expect: Option<&Expect>,
) -> Result<(), ProbeError> {
    let mut stream = connect(dial).await?;
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
