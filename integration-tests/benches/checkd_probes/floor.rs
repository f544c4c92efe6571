//! The floor: checkd's HTTP probe exchange, to the same targets at the same
//! rate, made by a prober with next to no code of its own (one epoll loop,
//! no runtime, no HTTP library, the response compared as bytes).
//! What it costs is what the kernel charges a prober for these probes' TCP
//! (on loopback the servers' side included, in the namespace run not);
//! what checkd costs above it is checkd's own. It runs as a child process
//! of the benchmark (see [`ask`]), so its CPU is read as checkd's is.
//!
//! Per probe, as checkd: a non-blocking socket ending with a reset, no
//! quick ACK (the handshake's last ACK goes with the request), one
//! edge-triggered registration for reading and writing, the request in one
//! write once connected, reads until the body has come.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::time::Instant;

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use socket2::{Domain, Socket, Type};

/// In a child's environment: run the floor prober instead of the benchmark,
/// on the targets of a place and a count of addresses (`loopback 100`).
const FLOOR: &str = "CHECKD_BENCH_FLOOR";

/// Makes `command` (this benchmark) run the floor on `addresses` × 100
/// targets of the place named `place`.
pub fn ask(command: &mut std::process::Command, place: &str, addresses: u8) {
    command.env(FLOOR, format!("{place} {addresses}"));
}

/// The place's name and the count of addresses, if this process is to be
/// the floor (see [`ask`]).
pub fn asked() -> Option<(String, u8)> {
    let asked = std::env::var(FLOOR).ok()?;
    let (place, addresses) = asked
        .split_once(' ')
        .unwrap_or_else(|| panic!("{FLOOR}={asked}: it is a place and a count"));
    Some((place.to_owned(), addresses.parse().unwrap()))
}

/// How often due probes are started: tokio's timer tick, as in checkd.
const TICK: Duration = Duration::from_millis(1);

struct Probe {
    socket: Socket,
    sent: bool,
    reply: Vec<u8>,
}

/// Probes every target once per `interval`, evenly spread, until killed.
pub fn run(targets: &[SocketAddr], interval: Duration) -> ! {
    let requests: Vec<Vec<u8>> = targets
        .iter()
        .map(|t| {
            format!(
                "GET / HTTP/1.1\r\nhost: {}\r\nuser-agent: tandem-checkd\r\nconnection: close\r\n\r\n",
                t.ip()
            )
            .into_bytes()
        })
        .collect();
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    let mut probes: HashMap<u64, (usize, Probe)> = HashMap::new();
    let mut events = Vec::with_capacity(1024);
    let step = interval / u32::try_from(targets.len()).unwrap();
    let start = Instant::now();
    let mut started = 0u64;
    loop {
        let due = start.elapsed().as_nanos() / step.as_nanos();
        while u128::from(started) <= due {
            let i = usize::try_from(started % targets.len() as u64).unwrap();
            if let Some(probe) = open(targets[i]) {
                let key = probe.socket.as_raw_fd() as u64;
                epoll::add(
                    &epoll,
                    &probe.socket,
                    epoll::EventData::new_u64(key),
                    epoll::EventFlags::IN
                        | epoll::EventFlags::OUT
                        | epoll::EventFlags::RDHUP
                        | epoll::EventFlags::ET,
                )
                .unwrap();
                probes.insert(key, (i, probe));
            }
            started += 1;
        }
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::try_from(TICK.as_nanos()).unwrap(),
        };
        epoll::wait(&epoll, spare_capacity(&mut events), Some(&timeout)).unwrap();
        for event in events.drain(..) {
            let key = event.data.u64();
            let Some((i, probe)) = probes.get_mut(&key) else {
                continue;
            };
            if advance(probe, &requests[*i]) {
                // Dropped: the socket closes with a reset.
                probes.remove(&key);
            }
        }
    }
}

/// A socket connecting to `target`; none if the kernel refused at once.
fn open(target: SocketAddr) -> Option<Probe> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None).unwrap();
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    // As checkd's HTTP probes: the handshake's last ACK goes with the request.
    socket.set_tcp_quickack(false).unwrap();
    match socket.connect(&target.into()) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
        Ok(()) => {}
        Err(_) => return None,
    }
    Some(Probe {
        socket,
        sent: false,
        reply: Vec::new(),
    })
}

/// Moves `probe` on after readiness; true when it is over.
fn advance(probe: &mut Probe, request: &[u8]) -> bool {
    if !probe.sent {
        // Connected (or failed): the request, then wait for the reply.
        return match probe.socket.send(request) {
            Ok(_) => {
                probe.sent = true;
                false
            }
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
    }
    let mut chunk = [0u8; 1024];
    loop {
        match std::io::Read::read(&mut &probe.socket, &mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                probe.reply.extend_from_slice(&chunk[..n]);
                if probe.reply.ends_with(super::RESPONSE) {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}
