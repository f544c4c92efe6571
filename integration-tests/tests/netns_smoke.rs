//! Tier 2 smoke: the harness builds a LAN of namespaces that exchange real
//! UDP, and tears it down, even when the test panics.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::UdpSocket;
use std::time::Duration;

use tandem_integration_tests::netns::{Lan, run};

fn namespaces() -> String {
    let out = run("ip", &["netns", "list"]).expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_namespaces_exchange_udp() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("udp").unwrap();
    let a = lan.host("a", "198.51.100.11/24").unwrap();
    let b = lan.host("b", "198.51.100.12/24").unwrap();

    let rx =
        b.ns.enter(|| UdpSocket::bind("198.51.100.12:5000"))
            .unwrap()
            .unwrap();
    let tx =
        a.ns.enter(|| UdpSocket::bind("198.51.100.11:0"))
            .unwrap()
            .unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    tx.send_to(b"ping", "198.51.100.12:5000").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from.ip().to_string().as_str()),
        (&b"ping"[..], "198.51.100.11")
    );

    rx.send_to(b"pong", from).unwrap();
    let (n, _) = tx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
}

#[test]
fn namespaces_are_removed_even_after_a_panic() {
    tandem_integration_tests::require_root();
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lan = Lan::new("panic").unwrap();
        let host = lan.host("h", "203.0.113.5/24").unwrap();
        names.push(lan.hub().name().to_owned());
        names.push(host.ns.name().to_owned());
        assert!(namespaces().contains(host.ns.name()));
        panic!("deliberate");
    }));
    assert!(result.is_err());
    let left = namespaces();
    for name in &names {
        assert!(
            !left.contains(name.as_str()),
            "{name} survived the panic: {left}"
        );
    }
}
