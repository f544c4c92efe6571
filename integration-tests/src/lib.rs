//! Harness for tandem's test tiers that need more than a unit test: network
//! namespace topologies on the host kernel (tier 2, [`netns`]), the
//! workspace's binaries as real processes ([`process`]), real servers for
//! probe tests ([`servers`]), frame capture in a namespace ([`capture`]), a serial line of two ptys
//! ([`serial_line`]), hbd's cluster view and events ([`hb_client`]),
//! a qemu VM running a Debian kernel with IPVS (tier 3, [`vm`]), and what
//! the benchmarks share ([`bench`]).
//! Everything it builds is torn down on drop, panics included. It never
//! touches the host's own links.

pub mod bench;
pub mod capture;
pub mod guest;
pub mod hb_client;
pub mod netns;
pub mod pki;
pub mod process;
pub mod serial_line;
pub mod servers;
pub mod vm;

/// True when the process runs as root (effective uid 0, read from procfs).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Panics with a clear message unless the process runs as root: namespace
/// and VM tests must fail, not pass, where they cannot run.
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root (network namespaces, the kernel VM): run `cargo xtask test` as root"
    );
}

/// Runs `f` to completion on a fresh current-thread runtime (tests call
/// gRPC clients from plain `#[test]` functions).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

/// One `GET path` to `addr` (HTTP/1.1, `Connection: close`); the whole
/// response, status line first. Panics on a socket error or after 5 s.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("sending to {addr}: {e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("reading from {addr}: {e}"));
    response
}
