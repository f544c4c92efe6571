//! One probe of one target: the check types, each in its own module, behind
//! [`Prober::probe`], which bounds every probe by the target's timeout.
//! A failure is a [`ProbeError`] whose text is what an operator reads as
//! the reason ("timeout after 800ms", "HTTP 503").

mod dns;
mod external;
mod http;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tandem_ipvsd::check::CheckClose;

use crate::target::{Plan, Target};

pub use self::http::TlsConfigs;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No result within the target's timeout.
    #[error("timeout after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The connection (or socket) could not be made.
    #[error("connect: {}", describe(.0))]
    Connect(io::Error),
    /// Sending or receiving failed.
    #[error("{stage}: {}", describe(.source))]
    Io {
        /// What was being done.
        stage: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The reply ended without what was expected.
    #[error("reply does not {expected}")]
    Reply {
        /// The expectation, e.g. `contain "220"`.
        expected: String,
    },
    /// An HTTP status not in the accepted list.
    #[error("HTTP {0}")]
    Status(u16),
    /// The body lacks what was expected.
    #[error("body does not {expected}")]
    Body {
        /// The expectation.
        expected: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A DNS answer was missing or wrong.
    #[error("DNS: {0}")]
    Dns(String),
    /// An external check exited non-zero or could not run.
    #[error("command: {0}")]
    Command(String),
    /// The target cannot be probed as configured.
    #[error("{0}")]
    Unprobeable(String),
}

/// Common kinds in plain words; anything else as the OS says it.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

impl From<tandem_icmp::EchoError> for ProbeError {
    fn from(error: tandem_icmp::EchoError) -> Self {
        match error {
            tandem_icmp::EchoError::Open(e) => Self::Connect(e),
            tandem_icmp::EchoError::Io { stage, source } => Self::Io { stage, source },
        }
    }
}

/// Where a probe's socket connects, and how.
#[derive(Clone, Copy, Debug)]
pub struct Dial {
    /// The peer: the real, or the VIP for a `through_vip` probe.
    pub addr: SocketAddr,
    /// The local address to bind, if given.
    pub source: Option<IpAddr>,
    /// A firewall mark for the socket: the probe service's, which sends a
    /// connection to the VIP to one real.
    pub mark: Option<u32>,
    /// How a TCP connection ends.
    pub close: CheckClose,
}

impl Dial {
    /// Marks `socket` (before it connects), if a mark is wanted. Needs
    /// CAP_NET_ADMIN, which checkd's unit grants.
    fn mark<S: std::os::fd::AsFd>(&self, socket: &S) -> Result<(), ProbeError> {
        match self.mark {
            Some(mark) => socket2::SockRef::from(socket)
                .set_mark(mark)
                .map_err(io_error("set the probe mark (needs CAP_NET_ADMIN)")),
            None => Ok(()),
        }
    }
}

/// The address this host sends from toward `real`: the source of a
/// through-VIP probe that has none configured (from the VIP itself the
/// real's answer would stay on the real). A route lookup; nothing is sent.
fn source_toward(real: IpAddr) -> Result<IpAddr, ProbeError> {
    let any = match real {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let stage = "find the source address toward the real";
    let socket = std::net::UdpSocket::bind((any, 0)).map_err(io_error(stage))?;
    socket.connect((real, 9)).map_err(io_error(stage))?;
    Ok(socket.local_addr().map_err(io_error(stage))?.ip())
}

fn io_error(stage: &'static str) -> impl FnOnce(io::Error) -> ProbeError {
    move |source| ProbeError::Io { stage, source }
}

/// Runs probes; holds what probes share (TLS client configs).
#[derive(Clone)]
pub struct Prober {
    tls: Arc<TlsConfigs>,
}

impl Prober {
    /// A prober with the system's trust store for verifying HTTPS checks.
    pub fn new() -> Self {
        Self {
            tls: Arc::new(TlsConfigs::new()),
        }
    }

    /// One probe of `target`, bounded by its timeout.
    pub async fn probe(&self, target: &Target) -> Result<(), ProbeError> {
        let timeout = target.timing.timeout;
        match tokio::time::timeout(timeout, self.probe_unbounded(target)).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout(timeout)),
        }
    }

    async fn probe_unbounded(&self, target: &Target) -> Result<(), ProbeError> {
        let source = match (target.mark, target.source) {
            (Some(_), None) => Some(source_toward(target.key.address)?),
            (_, source) => source,
        };
        let dial = Dial {
            addr: target.addr,
            source,
            mark: target.mark,
            // `through_vip` ones always reset: ipvsd refuses `close: fin`.
            close: target.spec.close.unwrap_or_default(),
        };
        match &target.plan {
            Plan::Tcp { send, expect } => tcp::probe(&dial, send.as_deref(), expect.as_ref()).await,
            Plan::Http(plan) => http::probe(&dial, plan, &self.tls).await,
            Plan::Udp { send, expect } => udp::probe(&dial, send, expect.as_ref()).await,
            Plan::Dns {
                name,
                record_type,
                expect,
            } => dns::probe(&dial, name, *record_type, expect.as_ref()).await,
            Plan::Icmp => tandem_icmp::echo(dial.addr.ip(), dial.source)
                .await
                .map_err(ProbeError::from),
            Plan::External { command } => external::probe(command, target).await,
            Plan::Forced(_) => Ok(()),
            Plan::Unprobeable(reason) => Err(ProbeError::Unprobeable(reason.clone())),
        }
    }
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
