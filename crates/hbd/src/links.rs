//! The heartbeat links, opened from the config: one UDP socket per
//! unicast, multicast and broadcast link, each bound to its interface and
//! to the one destination it serves (this host's own address, the group,
//! or the broadcast address), so a datagram is heard on exactly one link;
//! and one thread pair per serial line. Every received datagram or frame
//! goes to one channel, tagged with its link's index.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Links, Timers};
use crate::serial::{Deframer, frame, send_interval};
use crate::wire::MAX_DATAGRAM;

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A socket call failed.
    #[error("link {link}: {what}: {source}")]
    Socket {
        /// The link's name.
        link: String,
        /// The call.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The serial device could not be opened.
    #[error("link {link}: {source}")]
    Serial {
        /// The link's name.
        link: String,
        /// Why.
        #[source]
        source: serialport::Error,
    },
}

/// Something heard on a link.
#[derive(Debug)]
pub struct Received {
    /// The link's index in [`LinkSet::names`].
    pub link: usize,
    /// The datagram or frame payload.
    pub bytes: Vec<u8>,
}

enum Sender {
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    Serial {
        queue: std_mpsc::SyncSender<Vec<u8>>,
        every: Duration,
        last: Option<Instant>,
    },
}

/// The open links.
pub struct LinkSet {
    names: Vec<String>,
    senders: Vec<Sender>,
}

impl LinkSet {
    /// Opens every configured link; what is heard goes to `heard`.
    pub fn open(
        links: &Links,
        timers: &Timers,
        heard: mpsc::Sender<Received>,
    ) -> Result<Self, LinkError> {
        let mut set = Self {
            names: Vec::new(),
            senders: Vec::new(),
        };
        let port = links.udp_port;
        for l in &links.ucast {
            let name = format!("ucast {} {}", l.interface, l.peer);
            let socket = ucast_socket(&name, &l.interface, l.peer, port)?;
            set.add_udp(name, socket, SocketAddr::new(l.peer, port), &heard);
        }
        for l in &links.mcast {
            let name = format!("mcast {} {}", l.interface, l.group);
            let socket = mcast_socket(&name, &l.interface, l.group, l.ttl, port)?;
            set.add_udp(name, socket, SocketAddr::new(l.group.into(), port), &heard);
        }
        for l in &links.bcast {
            let name = format!("bcast {}", l.interface);
            let socket = bcast_socket(&name, &l.interface, port)?;
            let to = SocketAddr::new(Ipv4Addr::BROADCAST.into(), port);
            set.add_udp(name, socket, to, &heard);
        }
        for l in &links.serial {
            let name = format!("serial {}", l.device.display());
            let every = send_interval(l.baud, timers.keepalive);
            let queue = open_serial(&name, &l.device, l.baud, set.names.len(), &heard)?;
            set.names.push(name);
            set.senders.push(Sender::Serial {
                queue,
                every,
                last: None,
            });
        }
        Ok(set)
    }

    fn add_udp(
        &mut self,
        name: String,
        socket: UdpSocket,
        to: SocketAddr,
        heard: &mpsc::Sender<Received>,
    ) {
        let socket = Arc::new(socket);
        let link = self.names.len();
        tokio::spawn(receive_udp(
            socket.clone(),
            link,
            name.clone(),
            heard.clone(),
        ));
        self.names.push(name);
        self.senders.push(Sender::Udp { socket, to });
    }

    /// The links' names, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Sends `bytes` on every link that is due at `now` (serial links
    /// keep their own slower pace). Never blocks: a send that would block
    /// is dropped and returned as an error naming the link.
    pub fn send(&mut self, bytes: &[u8], now: Instant) -> Vec<(usize, io::Error)> {
        let mut failures = Vec::new();
        for (i, sender) in self.senders.iter_mut().enumerate() {
            match sender {
                Sender::Udp { socket, to } => {
                    if let Err(e) = socket.try_send_to(bytes, *to) {
                        failures.push((i, e));
                    }
                }
                Sender::Serial { queue, every, last } => {
                    if last.is_some_and(|at| now.saturating_duration_since(at) < *every) {
                        continue;
                    }
                    *last = Some(now);
                    if queue.try_send(frame(bytes)).is_err() {
                        failures.push((i, io::Error::from(io::ErrorKind::WouldBlock)));
                    }
                }
            }
        }
        failures
    }
}

async fn receive_udp(
    socket: Arc<UdpSocket>,
    link: usize,
    name: String,
    heard: mpsc::Sender<Received>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, _from)) => {
                let bytes = buf[..n].to_vec();
                if heard.send(Received { link, bytes }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(link = %name, error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn socket_error<'a>(link: &'a str, what: &'static str) -> impl FnOnce(io::Error) -> LinkError + 'a {
    move |source| LinkError::Socket {
        link: link.to_owned(),
        what,
        source,
    }
}

/// A UDP socket bound to `interface`, with address reuse so several links
/// share the port.
fn udp_on(link: &str, interface: &str, v6: bool) -> Result<Socket, LinkError> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_error(link, "socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(socket_error(link, "SO_REUSEADDR"))?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(socket_error(link, "SO_BINDTODEVICE"))?;
    socket
        .set_nonblocking(true)
        .map_err(socket_error(link, "O_NONBLOCK"))?;
    Ok(socket)
}

fn finish(link: &str, socket: Socket) -> Result<UdpSocket, LinkError> {
    UdpSocket::from_std(socket.into()).map_err(socket_error(link, "register"))
}

/// Unicast: bound to this host's own address on the interface (the one
/// the kernel would send to `peer` from), so broadcasts and multicasts
/// are not heard here.
fn ucast_socket(
    link: &str,
    interface: &str,
    peer: IpAddr,
    port: u16,
) -> Result<UdpSocket, LinkError> {
    let probe = udp_on(link, interface, peer.is_ipv6())?;
    probe
        .connect(&SocketAddr::new(peer, port).into())
        .map_err(socket_error(
            link,
            "find this host's address towards the peer",
        ))?;
    let local = probe
        .local_addr()
        .map_err(socket_error(link, "getsockname"))?
        .as_socket()
        .map(|a| a.ip())
        .ok_or_else(|| socket_error(link, "getsockname")(io::ErrorKind::InvalidData.into()))?;
    let socket = udp_on(link, interface, peer.is_ipv6())?;
    socket
        .bind(&SocketAddr::new(local, port).into())
        .map_err(socket_error(link, "bind"))?;
    finish(link, socket)
}

/// Multicast: bound to the group, joined on the interface, loop off. The
/// bound device also picks the outgoing interface.
fn mcast_socket(
    link: &str,
    interface: &str,
    group: Ipv4Addr,
    ttl: u32,
    port: u16,
) -> Result<UdpSocket, LinkError> {
    let index = interface_index(interface).map_err(socket_error(link, "find the interface"))?;
    let socket = udp_on(link, interface, false)?;
    socket
        .bind(&SocketAddr::new(group.into(), port).into())
        .map_err(socket_error(link, "bind"))?;
    socket
        .join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(index))
        .map_err(socket_error(link, "IP_ADD_MEMBERSHIP"))?;
    socket
        .set_multicast_ttl_v4(ttl)
        .map_err(socket_error(link, "IP_MULTICAST_TTL"))?;
    socket
        .set_multicast_loop_v4(false)
        .map_err(socket_error(link, "IP_MULTICAST_LOOP"))?;
    finish(link, socket)
}

/// Broadcast: bound to 255.255.255.255 on the interface.
fn bcast_socket(link: &str, interface: &str, port: u16) -> Result<UdpSocket, LinkError> {
    let socket = udp_on(link, interface, false)?;
    socket
        .set_broadcast(true)
        .map_err(socket_error(link, "SO_BROADCAST"))?;
    socket
        .bind(&SocketAddr::new(Ipv4Addr::BROADCAST.into(), port).into())
        .map_err(socket_error(link, "bind"))?;
    finish(link, socket)
}

fn interface_index(name: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        io::Error::new(e.kind(), format!("{name}: no such interface ({path}: {e})"))
    })?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {text:?}")))
}

/// Opens a serial line: a reader thread feeding frames to `heard` and a
/// writer thread draining the returned queue.
fn open_serial(
    name: &str,
    device: &Path,
    baud: u32,
    link: usize,
    heard: &mpsc::Sender<Received>,
) -> Result<std_mpsc::SyncSender<Vec<u8>>, LinkError> {
    let serial_error = |source| LinkError::Serial {
        link: name.to_owned(),
        source,
    };
    let port = serialport::new(device.to_string_lossy(), baud)
        .timeout(Duration::from_millis(50))
        .open_native()
        .map_err(serial_error)?;
    let mut reader = port.try_clone_native().map_err(serial_error)?;
    let mut writer = port;
    let heard = heard.clone();
    let reader_name = name.to_owned();
    std::thread::Builder::new()
        .name("hbd-serial-rx".into())
        .spawn(move || {
            use std::io::Read;
            let mut deframer = Deframer::default();
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(10)),
                    Ok(n) => {
                        for bytes in deframer.push(&buf[..n]) {
                            if heard.blocking_send(Received { link, bytes }).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(e) => {
                        tracing::warn!(link = %reader_name, error = %e, "serial read failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(socket_error(name, "spawn the serial reader"))?;
    let (queue, frames) = std_mpsc::sync_channel::<Vec<u8>>(1);
    let writer_name = name.to_owned();
    std::thread::Builder::new()
        .name("hbd-serial-tx".into())
        .spawn(move || {
            use std::io::Write;
            for bytes in frames {
                if let Err(e) = writer.write_all(&bytes).and_then(|()| writer.flush()) {
                    tracing::warn!(link = %writer_name, error = %e, "serial write failed");
                }
            }
        })
        .map_err(socket_error(name, "spawn the serial writer"))?;
    Ok(queue)
}
