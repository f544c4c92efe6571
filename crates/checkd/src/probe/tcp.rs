//! `tcp`: a connect, and ldirectord's *negotiate* for plain-text protocols:
//! send bytes, then read until the reply contains what is expected (SMTP,
//! POP, IMAP and FTP banners).

use std::net::SocketAddr;

use tandem_ipvsd::check::CheckClose;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{Dial, ProbeError, io_error};
use crate::expect::Expect;

/// Most of a reply read while looking for the expected text.
const MAX_REPLY: usize = 65_536;
/// Room made for each read of a reply.
const READ_CHUNK: usize = 4096;

/// A TCP connection as `dial` says; dropped, it ends as `dial.close` says.
/// `sends_first`: the caller writes as soon as it is connected (so the
/// handshake's last ACK can wait and go with those bytes).
pub async fn connect(dial: &Dial, sends_first: bool) -> Result<TcpStream, ProbeError> {
    let socket = match dial.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ProbeError::Connect)?;
    dial.mark(&socket)?;
    if dial.close == CheckClose::Reset {
        // Dropping the stream sends a reset. The director keeps no
        // TIME_WAIT (10,000 probes a second would fill its table), a real
        // that closed first none either, and an HTTP probe skips a FIN
        // exchange (a tenth of its kernel time on loopback, measured).
        // A through-VIP probe must end so: IPVS then holds its connection
        // entry in CLOSE, which a new SYN from the same source port
        // reschedules by mark. After a FIN the entry would wait for the
        // server to close too (minutes, for a hung one: CLOSE_WAIT) and
        // take a later probe reusing the port to this probe's real,
        // whatever that probe's mark says.
        socket
            .set_zero_linger()
            .map_err(io_error("set SO_LINGER"))?;
    }
    if sends_first {
        // The kernel then holds the handshake's last ACK back until the
        // first bytes go, in the same packet: a packet less each way per
        // probe (HAProxy's `tcp-smart-connect`). Not when the server
        // speaks first: it would wait for that ACK (a delayed-ACK timeout).
        socket2::SockRef::from(&socket)
            .set_tcp_quickack(false)
            .map_err(io_error("set TCP_QUICKACK"))?;
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
    let mut stream = connect(dial, send.is_some()).await?;
    if let Some(bytes) = send {
        stream.write_all(bytes).await.map_err(io_error("send"))?;
    }
    let Some(expect) = expect else {
        return Ok(());
    };
    // Read into the heap: a buffer on the stack would be held across the
    // await, in every probe's future.
    let mut reply = Vec::with_capacity(READ_CHUNK);
    while reply.len() < MAX_REPLY {
        reply.reserve(READ_CHUNK.min(MAX_REPLY - reply.len()));
        let n = stream
            .read_buf(&mut reply)
            .await
            .map_err(io_error("receive"))?;
        if n == 0 {
            break;
        }
        if expect.matches(&reply) {
            return Ok(());
        }
    }
    Err(ProbeError::Reply {
        expected: expect.to_string(),
    })
}
