//! [`Capture`]: every Ethernet frame a namespace sees (both directions),
//! read from a packet socket opened inside it, with its arrival time — a
//! tcpdump the tests can assert on.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::time::Instant;

use crate::netns::{Netns, NetnsError};
use socket2::{Domain, Protocol, Socket, Type};

/// ETH_P_ALL: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// A frame seen in the namespace.
#[derive(Clone, Debug)]
pub struct Frame {
    /// When the capture thread read it.
    pub at: Instant,
    /// The whole Ethernet frame.
    pub bytes: Vec<u8>,
}

impl Frame {
    /// Source MAC.
    pub fn src(&self) -> [u8; 6] {
        self.bytes
            .get(6..12)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default()
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        self.bytes
            .get(12..14)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// The frame as IPv4 ARP, if it is one.
    pub fn arp(&self) -> Option<Arp> {
        if self.ethertype() != 0x0806 || self.bytes.len() < 42 {
            return None;
        }
        let b = &self.bytes;
        Some(Arp {
            op: u16::from_be_bytes([b[20], b[21]]),
            sender_mac: b[22..28].try_into().ok()?,
            sender_ip: b[28..32].try_into().ok()?,
            target_ip: b[38..42].try_into().ok()?,
        })
    }

    /// The frame as a TCP segment over IPv4, if it is one.
    pub fn tcp(&self) -> Option<TcpSegment> {
        let b = &self.bytes;
        if self.ethertype() != 0x0800 || b.len() < 34 || b[23] != 6 {
            return None;
        }
        let ip_header = usize::from(b[14] & 0x0f) * 4;
        let ip_len = usize::from(u16::from_be_bytes([b[16], b[17]]));
        let tcp = b.get(14 + ip_header..14 + ip_header + 20)?;
        let tcp_header = usize::from(tcp[12] >> 4) * 4;
        Some(TcpSegment {
            src: b[26..30].try_into().ok()?,
            dst: b[30..34].try_into().ok()?,
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            flags: tcp[13],
            payload: ip_len.checked_sub(ip_header + tcp_header)?,
        })
    }

    /// For an ICMPv6 neighbour solicitation (135) or advertisement (136)
    /// without IPv6 extension headers: (type, target address).
    pub fn neighbour(&self) -> Option<(u8, [u8; 16])> {
        let b = &self.bytes;
        if self.ethertype() != 0x86dd || b.len() < 78 || b[20] != 58 {
            return None;
        }
        let kind = b[54];
        if kind != 135 && kind != 136 {
            return None;
        }
        Some((kind, b[62..78].try_into().ok()?))
    }
}

/// The fields of a TCP segment (over IPv4) the tests look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10…).
    pub flags: u8,
    /// Bytes of data the segment carries.
    pub payload: usize,
}

/// The fields of an ARP frame the tests look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 = request, 2 = reply.
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: [u8; 6],
    /// Sender protocol address.
    pub sender_ip: [u8; 4],
    /// Target protocol address.
    pub target_ip: [u8; 4],
}

/// A running capture; [`Capture::stop`] returns what it saw.
pub struct Capture {
    running: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Frame>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing every frame on every interface of `ns`.
    pub fn start(ns: &Netns) -> Result<Self, NetnsError> {
        let socket = ns
            .enter(|| {
                let protocol = Protocol::from(i32::from(ETH_P_ALL.to_be()));
                let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol))?;
                socket.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok::<_, std::io::Error>(socket)
            })?
            .map_err(|source| NetnsError::Io {
                what: "opening a packet socket".into(),
                source,
            })?;
        let running = Arc::new(AtomicBool::new(true));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (running, frames) = (Arc::clone(&running), Arc::clone(&frames));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while running.load(Ordering::Relaxed) {
                    let Ok(n) = (&socket).read(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    let bytes = buf[..n].to_vec();
                    if let Ok(mut f) = frames.lock() {
                        f.push(Frame { at, bytes });
                    }
                }
            })
        };
        Ok(Self {
            running,
            frames,
            thread: Some(thread),
        })
    }

    /// Frames seen so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Stops and returns every frame seen.
    pub fn stop(mut self) -> Vec<Frame> {
        self.halt();
        self.frames()
    }

    fn halt(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}
