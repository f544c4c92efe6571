//! Real servers for probe tests, run on threads inside a test's namespace:
//! HTTP (and HTTPS with a throw-away certificate) whose answer a test
//! switches at run time or scripts response by response, a TCP banner
//! server, a UDP echo and a one-record DNS server. Each logs when it
//! answered, so a test can place checkd's transitions between two answers.
//! For traffic tests: an HTTP server that answers with its name, and a
//! client that counts which server answered ([`named_http_server`],
//! [`http_spread`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::netns::Netns;

/// How an HTTP server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HttpMode {
    /// 200 with a body containing "Test Page".
    Ok = 0,
    /// 500.
    Error = 1,
    /// 200 with a body lacking "Test Page".
    WrongBody = 2,
    /// Accepts, reads the request, never answers.
    Hang = 3,
}

impl HttpMode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Error,
            2 => Self::WrongBody,
            3 => Self::Hang,
            _ => Self::Ok,
        }
    }
}

struct HttpState {
    mode: AtomicU8,
    /// Answers still to give in order ('+' = Ok, '-' = Error) before `mode`.
    script: Mutex<Vec<u8>>,
    /// When each answer was sent, and whether it was Ok.
    answers: Mutex<Vec<(SystemTime, bool)>>,
    stop: AtomicBool,
}

/// An HTTP/1.1 server in a namespace; stops (closing its listener, so
/// connections are refused) on [`HttpServer::stop`] or drop.
pub struct HttpServer {
    state: Arc<HttpState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A TCP listener at `addr` inside `ns`.
fn bind_tcp(ns: &Netns, addr: SocketAddr) -> TcpListener {
    ns.enter(move || TcpListener::bind(addr))
        .expect("entering the namespace")
        .unwrap_or_else(|e| panic!("binding {addr}: {e}"))
}

/// A UDP socket at `addr` inside `ns`.
fn bind_udp(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    ns.enter(move || UdpSocket::bind(addr))
        .expect("entering the namespace")
        .unwrap_or_else(|e| panic!("binding {addr}: {e}"))
}

/// A TLS server config with a self-signed certificate for `name`.
pub fn self_signed_tls(name: &str) -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate().expect("TLS key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("cert params")
        .self_signed(&key)
        .expect("self-signed cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server TLS config");
    Arc::new(config)
}

/// The server names (SNI) TLS clients asked a [`recording_tls`] server for,
/// in order (`None`: a hello without one).
pub type SniSeen = Arc<Mutex<Vec<Option<String>>>>;

/// A TLS server config that serves the certificate in `cert_pem` (with its
/// key in `key_pem`) whatever name is asked for, and records the names.
pub fn recording_tls(cert_pem: &Path, key_pem: &Path) -> (Arc<rustls::ServerConfig>, SniSeen) {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert_pem)
        .expect("reading the certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("parsing the certificate");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_pem).expect("reading the key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(key)
        .expect("loading the key");
    let seen = SniSeen::default();
    let resolver = Recording {
        key: Arc::new(rustls::sign::CertifiedKey::new(certs, key)),
        seen: seen.clone(),
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    (Arc::new(config), seen)
}

#[derive(Debug)]
struct Recording {
    key: Arc<rustls::sign::CertifiedKey>,
    seen: SniSeen,
}

impl rustls::server::ResolvesServerCert for Recording {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hello.server_name().map(str::to_owned));
        Some(self.key.clone())
    }
}

impl HttpServer {
    /// Serves at `addr` in `ns`, with TLS if `tls` is given.
    pub fn start(ns: &Netns, addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = bind_tcp(ns, addr);
        Self::serve(listener, tls)
    }

    /// Serves plain HTTP at `addr` in this process's own namespace.
    pub fn start_here(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self::serve(TcpListener::bind(addr)?, None))
    }

    fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let state = Arc::new(HttpState {
            mode: AtomicU8::new(HttpMode::Ok as u8),
            script: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (shared, tls) = (shared.clone(), tls.clone());
                        std::thread::spawn(move || serve_http(stream, &shared, tls));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            state,
            thread: Some(thread),
        }
    }

    /// Answers from now on.
    pub fn set(&self, mode: HttpMode) {
        self.state.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// The next answers, in order: `+` a 200, `-` a 500; then the mode.
    pub fn script(&self, answers: &str) {
        let mut script = self
            .state
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *script = answers.bytes().rev().collect();
    }

    /// When each answer was sent and whether it was a success.
    pub fn answers(&self) -> Vec<(SystemTime, bool)> {
        self.state
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes the listener: new connections are refused (RST).
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_http(stream: TcpStream, state: &HttpState, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    match tls {
        None => answer(stream, state),
        Some(config) => {
            let Ok(connection) = rustls::ServerConnection::new(config) else {
                return;
            };
            answer(rustls::StreamOwned::new(connection, stream), state);
        }
    }
}

fn answer(stream: impl Read + Write, state: &HttpState) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // The request line and headers, up to the blank line.
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let scripted = state
        .script
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let mode = match scripted {
        Some(b'+') => HttpMode::Ok,
        Some(_) => HttpMode::Error,
        None => HttpMode::from_u8(state.mode.load(Ordering::Relaxed)),
    };
    let (status, body) = match mode {
        HttpMode::Ok => ("200 OK", "<h1>Test Page</h1>\n"),
        HttpMode::Error => ("500 Internal Server Error", "oops\n"),
        HttpMode::WrongBody => ("200 OK", "<h1>Welcome to nginx</h1>\n"),
        HttpMode::Hang => {
            std::thread::sleep(Duration::from_secs(10));
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Stamped before sending: the client may act on it before we return.
    let sent = SystemTime::now();
    let stream = reader.get_mut();
    if stream.write_all(response.as_bytes()).is_ok() && stream.flush().is_ok() {
        state
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((sent, mode == HttpMode::Ok));
    }
}

/// A TCP server that greets every connection with `banner` and closes.
pub fn banner_server(ns: &Netns, addr: SocketAddr, banner: &'static str) {
    let listener = bind_tcp(ns, addr);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(banner.as_bytes());
        }
    });
}

/// A UDP server answering `pong` to `ping` (and nothing to anything else).
pub fn udp_echo(ns: &Netns, addr: SocketAddr) {
    let socket = bind_udp(ns, addr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if buf[..n].starts_with(b"ping") {
                let _ = socket.send_to(b"pong", from);
            }
        }
    });
}

/// A TCP server that reads what each connection sends first, then writes
/// `reply` and closes; with `None` it never answers and holds the
/// connection open.
pub fn tcp_responder(ns: &Netns, addr: SocketAddr, reply: Option<&'static [u8]>) {
    let listener = bind_tcp(ns, addr);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            match reply {
                Some(reply) => {
                    let _ = stream.read(&mut [0u8; 512]);
                    let _ = stream.write_all(reply);
                }
                None => held.push(stream),
            }
        }
    });
}

/// A UDP server answering every datagram with `reply`, or, with `None`,
/// never answering.
pub fn udp_responder(ns: &Netns, addr: SocketAddr, reply: Option<&'static [u8]>) {
    let socket = bind_udp(ns, addr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((_, from)) = socket.recv_from(&mut buf) {
            if let Some(reply) = reply {
                let _ = socket.send_to(reply, from);
            }
        }
    });
}

/// A DNS server over UDP answering every A query with `answer` (TTL 60),
/// or, with `None`, that the name does not exist (NXDOMAIN).
pub fn dns_server(ns: &Netns, addr: SocketAddr, answer: Option<Ipv4Addr>) {
    let socket = bind_udp(ns, addr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if let Some(reply) = dns_reply(&buf[..n], answer) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
}

/// The query turned into a response with one A record, or with none and
/// NXDOMAIN (RFC 1035 4.1).
fn dns_reply(query: &[u8], answer: Option<Ipv4Addr>) -> Option<Vec<u8>> {
    // Header (12 bytes), then one question: a name, type and class.
    let name_end = 12 + query.get(12..)?.iter().position(|&b| b == 0)? + 1;
    let question_end = name_end + 4;
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x81; // QR, RD
    reply[8..12].fill(0); // NSCOUNT, ARCOUNT
    let Some(answer) = answer else {
        reply[3] = 0x83; // RA, NXDOMAIN
        reply[6..8].fill(0); // ANCOUNT
        return Some(reply);
    };
    reply[3] = 0x80; // RA, NOERROR
    reply[6..8].copy_from_slice(&1u16.to_be_bytes()); // ANCOUNT
    reply.extend_from_slice(&[0xc0, 0x0c]); // the question's name
    reply.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    reply.extend_from_slice(&60u32.to_be_bytes());
    reply.extend_from_slice(&4u16.to_be_bytes());
    reply.extend_from_slice(&answer.octets());
    Some(reply)
}

/// Serves HTTP on `port` in `ns` until the namespace goes, answering every
/// request with `name` as the body.
pub fn named_http_server(ns: &Netns, port: u16, name: &'static str) {
    let listener = ns
        .enter(move || TcpListener::bind(("0.0.0.0", port)))
        .expect("entering the namespace")
        .unwrap_or_else(|e| panic!("binding port {port}: {e}"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let body = name.as_bytes();
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
}

/// Makes `n` HTTP requests from `client` to `vip`, each on a new
/// connection; counts the answers by body (a [`named_http_server`]'s name).
pub fn http_spread(client: &Netns, vip: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    client
        .enter(move || {
            let mut counts = BTreeMap::new();
            for i in 0..n {
                let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("request {i} to {vip}: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("a read timeout");
                let mut response = String::new();
                let sent = write!(s, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n");
                if let Err(e) = sent.and_then(|()| s.read_to_string(&mut response).map(drop)) {
                    panic!("request {i} to {vip}: {e}");
                }
                let body = response.rsplit("\r\n\r\n").next().unwrap_or("").to_owned();
                *counts.entry(body).or_insert(0) += 1;
            }
            counts
        })
        .expect("entering the namespace")
}
