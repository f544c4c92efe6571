//! Wire conversions: a service survives the round trip; what is not an
//! address or a port is named.

use super::*;
use crate::config::IpvsdConfig;

const FULL: &str = "
virtual_services:
  - name: web
    address: 198.51.100.10
    port: 80
    scheduler: sh
    scheduler_flags: [sh-port]
    persistence: {timeout: 10m, netmask: 255.255.255.0}
    forward: tunnel
    quiescent: false
    fallback: 198.51.100.200:80
    check: {type: http, interval: 2s, request: /health, receive: ok, headers: {X-A: b}, close: fin}
    reals:
      - address: 198.51.100.101
        weight: 3
        upper_threshold: 100
        lower_threshold: 50
      - address: 198.51.100.102
        forward: masq
        port: 8080
        check: {type: tcp, send: PING, receive: PONG, close: reset}
  - fwmark: 7
    family: ipv6
    scheduler: mh
    reals:
      - address: 2001:db8::1
";

#[test]
fn a_service_survives_the_round_trip() {
    let c: IpvsdConfig =
        tandem_daemon::config::parse(std::path::Path::new("f.yaml"), FULL).unwrap();
    for vs in &c.virtual_services {
        let back = virtual_service(&virtual_service_to_wire(vs)).unwrap();
        assert_eq!(&back, vs);
    }
}

#[test]
fn bad_strings_and_numbers_name_the_field() {
    let vs = pb::VirtualService {
        address: "198.51.100.10".into(),
        port: 80,
        reals: vec![pb::RealServer {
            address: "198.51.100.300".into(),
            ..pb::RealServer::default()
        }],
        ..pb::VirtualService::default()
    };
    let err = virtual_service(&vs).unwrap_err().to_string();
    assert_eq!(
        err,
        "reals[0].address: `198.51.100.300` is not an IP address"
    );

    let big = pb::VirtualService {
        address: "198.51.100.10".into(),
        port: 70_000,
        ..pb::VirtualService::default()
    };
    assert!(
        virtual_service(&big)
            .unwrap_err()
            .to_string()
            .starts_with("port:")
    );
    let unknown = pb::VirtualService {
        protocol: 9,
        port: 80,
        ..big
    };
    assert!(
        virtual_service(&unknown)
            .unwrap_err()
            .to_string()
            .starts_with("protocol:")
    );
}

#[test]
fn an_empty_key_is_refused() {
    let err = required_key("service", Some(&pb::ServiceKey::default())).unwrap_err();
    assert_eq!(err.field, "service.address");
    assert_eq!(required_key("service", None).unwrap_err().field, "service");
}
