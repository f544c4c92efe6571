//! The IPVS netlink socket: resolves the `IPVS` family, then runs requests
//! pipelined — many per `sendmsg`, up to [`WINDOW`] in flight, only the last
//! of each `sendmsg` acknowledged — and returns each request's outcome in
//! order. Dumps run one at a time (the kernel allows
//! one per socket). Verbs are named like `ipvsadm`'s options.

use std::io;

use neli::consts::socket::{Msg, NlFamily};
use neli::socket::NlSocket;
use neli::utils::Groups;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::codec::{self, DecodeError, EncodeError, Genl, Request};
use super::exchange::{Exchange, KernelError, Outcome};
use super::types::{
    DestEntry, Info, Service, ServiceEntry, ServiceKey, SyncDaemon, SyncRole, Timeouts,
};

/// Requests in flight at most: bounds what the kernel queues for us.
pub const WINDOW: usize = 256;
/// Bytes of one receive; the kernel's dump messages fit easily.
const RECV_BUFFER: usize = 256 * 1024;
/// Socket receive buffer asked for, so a window of acks never overflows it.
const SOCKET_RCVBUF: usize = 4 * 1024 * 1024;

/// Why talking to the kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("IPVS netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel has no IPVS (module not loaded, or not built).
    #[error("the kernel has no IPVS generic netlink family (is the ip_vs module available?)")]
    NoIpvs,
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Kernel {
        /// The request.
        what: String,
        /// The kernel's error.
        #[source]
        source: KernelError,
    },
    /// A request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A reply could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Services whose reals are dumped per [`IpvsClient::table`] batch.
const DUMP_BATCH: usize = 16;

/// A connection to the kernel's IPVS table.
pub struct IpvsClient {
    socket: AsyncFd<NlSocket>,
    family: u16,
    exchange: Exchange,
    buffer: Vec<u8>,
}

impl IpvsClient {
    /// Opens a generic netlink socket and resolves the IPVS family.
    pub async fn connect() -> Result<Self, ClientError> {
        let socket = NlSocket::connect(NlFamily::Generic, None, Groups::empty())?;
        socket.nonblock()?;
        socket.set_recv_buffer_size(SOCKET_RCVBUF)?;
        let mut client = Self {
            socket: register(socket)?,
            family: codec::GENL_ID_CTRL,
            exchange: Exchange::new(),
            buffer: vec![0; RECV_BUFFER],
        };
        let reply = client
            .execute(vec![codec::get_family(super::abi::FAMILY)?])
            .await?
            .pop()
            .ok_or(ClientError::NoIpvs)?;
        let parts = reply.map_err(|e| {
            if e.errno == ENOENT {
                ClientError::NoIpvs
            } else {
                ClientError::Kernel {
                    what: "resolving the IPVS family".into(),
                    source: e,
                }
            }
        })?;
        client.family = codec::parse_family_id(parts.first().ok_or(ClientError::NoIpvs)?)?;
        Ok(client)
    }

    /// Runs `requests` pipelined; one outcome per request, in order. A refused
    /// request does not stop the others: the caller sees exactly which failed.
    pub async fn execute(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, ClientError> {
        // Nothing is in flight between calls; anything left is from a call
        // that failed or was dropped half-way, and would block every dump.
        self.exchange.abandon();
        let total = requests.len();
        let mut outcomes: Vec<Option<Outcome>> = (0..total).map(|_| None).collect();
        let mut index_of = std::collections::HashMap::with_capacity(total.min(WINDOW));
        let mut queue = requests.into_iter().enumerate().peekable();
        let mut finished = 0;
        let mut out = Vec::new();
        while finished < total {
            out.clear();
            // One sendmsg: as many requests as the window allows (a dump
            // alone), only the last acknowledged.
            let mut batch = Vec::new();
            while self.exchange.in_flight() + batch.len() < WINDOW
                && queue.peek().is_some_and(|(_, req)| {
                    self.exchange.can_start(req) && (batch.is_empty() || !req.dump)
                })
            {
                let Some(next) = queue.next() else { break };
                let dump = next.1.dump;
                batch.push(next);
                if dump {
                    break;
                }
            }
            let last = batch.len().saturating_sub(1);
            for (k, (i, req)) in batch.into_iter().enumerate() {
                let seq = self.exchange.start(req, self.family, k == last, &mut out)?;
                index_of.insert(seq, i);
            }
            if !out.is_empty() {
                self.send(&out).await?;
            }
            let n = self.recv().await?;
            for (seq, outcome) in self.exchange.receive(&self.buffer[..n])? {
                if let Some(i) = index_of.remove(&seq) {
                    outcomes[i] = Some(outcome);
                    finished += 1;
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Ok(Vec::new())))
            .collect())
    }

    async fn send(&self, bytes: &[u8]) -> Result<(), ClientError> {
        let sent = self
            .socket
            .async_io(Interest::WRITABLE, |s| s.send(bytes, Msg::empty()))
            .await?;
        if sent != bytes.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short netlink send").into());
        }
        Ok(())
    }

    async fn recv(&mut self) -> Result<usize, ClientError> {
        let buffer = &mut self.buffer;
        let (n, _) = self
            .socket
            .async_io(Interest::READABLE, |s| {
                s.recv(&mut buffer[..], Msg::empty())
            })
            .await?;
        Ok(n)
    }

    /// Runs one request; its replies, or the kernel's error named by `what`.
    async fn one(
        &mut self,
        request: Request,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<Genl>, ClientError> {
        let outcome = self
            .execute(vec![request])
            .await?
            .pop()
            .unwrap_or(Ok(Vec::new()));
        outcome.map_err(|source| ClientError::Kernel {
            what: what(),
            source,
        })
    }

    /// `ipvsadm -A`.
    pub async fn add_service(&mut self, s: &Service) -> Result<(), ClientError> {
        self.one(codec::new_service(s)?, || {
            format!("adding service {}", s.key)
        })
        .await
        .map(drop)
    }

    /// `ipvsadm -E`.
    pub async fn edit_service(&mut self, s: &Service) -> Result<(), ClientError> {
        self.one(codec::set_service(s)?, || {
            format!("editing service {}", s.key)
        })
        .await
        .map(drop)
    }

    /// `ipvsadm -D`.
    pub async fn delete_service(&mut self, key: &ServiceKey) -> Result<(), ClientError> {
        self.one(codec::del_service(key)?, || {
            format!("deleting service {key}")
        })
        .await
        .map(drop)
    }

    /// `ipvsadm -a`.
    pub async fn add_dest(
        &mut self,
        key: &ServiceKey,
        d: &super::types::Dest,
    ) -> Result<(), ClientError> {
        self.one(codec::new_dest(key, d)?, || {
            format!("adding real {}:{} to {key}", d.addr, d.port)
        })
        .await
        .map(drop)
    }

    /// `ipvsadm -e`.
    pub async fn edit_dest(
        &mut self,
        key: &ServiceKey,
        d: &super::types::Dest,
    ) -> Result<(), ClientError> {
        self.one(codec::set_dest(key, d)?, || {
            format!("editing real {}:{} of {key}", d.addr, d.port)
        })
        .await
        .map(drop)
    }

    /// `ipvsadm -d`.
    pub async fn delete_dest(
        &mut self,
        key: &ServiceKey,
        addr: &std::net::IpAddr,
        port: u16,
    ) -> Result<(), ClientError> {
        self.one(codec::del_dest(key, addr, port)?, || {
            format!("deleting real {addr}:{port} of {key}")
        })
        .await
        .map(drop)
    }

    /// Every virtual service (`ipvsadm -L` without the reals).
    pub async fn services(&mut self) -> Result<Vec<ServiceEntry>, ClientError> {
        let parts = self
            .one(codec::get_services()?, || "listing services".into())
            .await?;
        Ok(parts
            .iter()
            .map(codec::parse_service)
            .collect::<Result<_, _>>()?)
    }

    /// The real servers of one service.
    pub async fn dests(&mut self, key: &ServiceKey) -> Result<Vec<DestEntry>, ClientError> {
        let parts = self
            .one(codec::get_dests(key)?, || format!("listing reals of {key}"))
            .await?;
        Ok(parts
            .iter()
            .map(|g| codec::parse_dest(g, key.family()))
            .collect::<Result<_, _>>()?)
    }

    /// The whole table (`ipvsadm -Ln`): every service with its reals. The
    /// kernel runs one dump per socket at a time, so the per-service dumps
    /// go in batches of [`DUMP_BATCH`], each parsed before the next: the raw
    /// replies of a large table are never all held at once.
    pub async fn table(&mut self) -> Result<Vec<(ServiceEntry, Vec<DestEntry>)>, ClientError> {
        let services = self.services().await?;
        let mut table = Vec::with_capacity(services.len());
        for batch in services.chunks(DUMP_BATCH) {
            let requests = batch
                .iter()
                .map(|s| codec::get_dests(&s.service.key))
                .collect::<Result<Vec<_>, _>>()?;
            let outcomes = self.execute(requests).await?;
            for (s, outcome) in batch.iter().zip(outcomes) {
                let key = s.service.key;
                let parts = outcome.map_err(|source| ClientError::Kernel {
                    what: format!("listing reals of {key}"),
                    source,
                })?;
                let dests = parts
                    .iter()
                    .map(|g| codec::parse_dest(g, key.family()))
                    .collect::<Result<_, _>>()?;
                table.push((s.clone(), dests));
            }
        }
        Ok(table)
    }

    /// The IPVS version and connection table size.
    pub async fn info(&mut self) -> Result<Info, ClientError> {
        let parts = self
            .one(codec::get_info()?, || "reading IPVS info".into())
            .await?;
        let first = parts.first().ok_or(DecodeError::Missing {
            what: "info",
            attr: "reply",
        })?;
        Ok(codec::parse_info(first)?)
    }

    /// The connection timeouts (`ipvsadm -L --timeout`).
    pub async fn timeouts(&mut self) -> Result<Timeouts, ClientError> {
        let parts = self
            .one(codec::get_config()?, || "reading timeouts".into())
            .await?;
        let first = parts.first().ok_or(DecodeError::Missing {
            what: "timeouts",
            attr: "reply",
        })?;
        Ok(codec::parse_config(first)?)
    }

    /// `ipvsadm --set`.
    pub async fn set_timeouts(&mut self, t: &Timeouts) -> Result<(), ClientError> {
        self.one(codec::set_config(t)?, || "setting timeouts".into())
            .await
            .map(drop)
    }

    /// `ipvsadm --start-daemon`.
    pub async fn start_daemon(&mut self, d: &SyncDaemon) -> Result<(), ClientError> {
        self.one(codec::new_daemon(d)?, || {
            format!("starting the {:?} sync daemon", d.role)
        })
        .await
        .map(drop)
    }

    /// `ipvsadm --stop-daemon`.
    pub async fn stop_daemon(&mut self, role: SyncRole) -> Result<(), ClientError> {
        self.one(codec::del_daemon(role)?, || {
            format!("stopping the {role:?} sync daemon")
        })
        .await
        .map(drop)
    }

    /// The running sync daemons (`ipvsadm -L --daemon`).
    pub async fn daemons(&mut self) -> Result<Vec<SyncDaemon>, ClientError> {
        let parts = self
            .one(codec::get_daemons()?, || "listing sync daemons".into())
            .await?;
        Ok(parts
            .iter()
            .map(codec::parse_daemon)
            .collect::<Result<_, _>>()?)
    }
}

/// ENOENT on Linux: what the controller answers for an unknown family.
const ENOENT: i32 = 2;

/// Hands the socket to tokio's reactor.
#[allow(
    unsafe_code,
    reason = "AsyncFd::register is unsafe; the safe AsyncFd::new is deprecated as unsound"
)]
fn register(socket: NlSocket) -> io::Result<AsyncFd<NlSocket>> {
    // SAFETY: `NlSocket` owns its file descriptor, opened just above, and
    // closes it only when dropped; the AsyncFd owns the NlSocket, so the
    // descriptor stays valid and unreplaced for as long as it is registered.
    unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}
