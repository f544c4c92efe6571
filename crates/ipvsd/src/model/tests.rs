//! The run-time model: edits validate the result whole and name the field;
//! run-time state survives edits that keep the real and goes with it.

use super::*;
use crate::config::IpvsdConfig;

const WEB: &str = "
virtual_services:
  - address: 198.51.100.10
    port: 80
    scheduler: wrr
    forward: masq
    reals:
      - address: 198.51.100.101
      - address: 198.51.100.102
        port: 8080
";

fn model() -> Model {
    let c: IpvsdConfig = tandem_daemon::config::parse(std::path::Path::new("m.yaml"), WEB).unwrap();
    Model::new(c.virtual_services, c.probe_marks).unwrap()
}

fn key(m: &Model) -> ServiceKey {
    m.services()[0].key().unwrap()
}

fn real(address: &str, port: Option<u16>) -> RealServer {
    RealServer {
        address: address.parse().unwrap(),
        port,
        weight: 1,
        forward: None,
        upper_threshold: 0,
        lower_threshold: 0,
        check: None,
    }
}

fn invalid(e: ModelError) -> String {
    match e {
        ModelError::Invalid(e) => e.to_string(),
        ModelError::NotFound(what) => panic!("not found, expected invalid: {what}"),
    }
}

#[test]
fn a_duplicate_real_names_the_field() {
    let mut m = model();
    let mut vs = m.services()[0].clone();
    vs.reals.push(real("198.51.100.101", None));
    let err = invalid(m.put_service(vs).unwrap_err());
    assert!(err.starts_with("service.reals[2].address:"), "{err}");
    assert_eq!(m.version(), 1);
}

#[test]
fn a_put_real_error_names_the_real() {
    let mut m = model();
    let k = key(&m);
    let err = invalid(m.put_real(k, real("2001:db8::1", None)).unwrap_err());
    assert!(err.starts_with("real.address:"), "{err}");
    let mut heavy = real("198.51.100.103", None);
    heavy.weight = 70_000;
    assert!(invalid(m.put_real(k, heavy).unwrap_err()).starts_with("real.weight:"));
}

#[test]
fn put_real_replaces_by_address_and_port() {
    let mut m = model();
    let k = key(&m);
    let mut r = real("198.51.100.102", Some(8080));
    r.weight = 5;
    m.put_real(k, r).unwrap();
    assert_eq!(m.services()[0].reals.len(), 2);
    assert_eq!(m.services()[0].reals[1].weight, 5);
    m.put_real(k, real("198.51.100.102", Some(8081))).unwrap();
    assert_eq!(m.services()[0].reals.len(), 3);
    assert_eq!(m.version(), 3);
}

#[test]
fn deleting_what_is_not_there_is_not_found() {
    let mut m = model();
    let k = key(&m);
    assert!(
        matches!(
            m.delete_real(k, "198.51.100.102".parse().unwrap(), None),
            Err(ModelError::NotFound(_))
        ),
        "the real is on port 8080, not the service's 80"
    );
    m.delete_real(k, "198.51.100.102".parse().unwrap(), Some(8080))
        .unwrap();
    m.delete_service(k).unwrap();
    assert!(matches!(m.delete_service(k), Err(ModelError::NotFound(_))));
}

#[test]
fn health_and_drain_survive_a_replace_that_keeps_the_real_and_go_with_it() {
    let mut m = model();
    let k = key(&m);
    let a = (k, "198.51.100.101".parse().unwrap(), 80);
    let b = (k, "198.51.100.102".parse().unwrap(), 8080);
    assert!(m.set_health(a, Health::Down, "HTTP 503".into()).unwrap());
    assert!(!m.set_health(a, Health::Down, "HTTP 503".into()).unwrap());
    m.set_drain(b, Drain::Draining { drain: 1 });
    let mut vs = m.services()[0].clone();
    vs.scheduler = "rr".into();
    vs.reals.truncate(1);
    m.put_service(vs).unwrap();
    assert_eq!(m.state(&a).health, Health::Down);
    assert_eq!(m.state(&a).detail, "HTTP 503");
    assert_eq!(m.state(&b), RealState::default());
    assert!(m.set_health(b, Health::Up, String::new()).is_err());
}

#[test]
fn a_selector_picks_by_address_port_and_service() {
    let m = model();
    let by_address = Selector {
        address: "198.51.100.102".parse().unwrap(),
        port: None,
        service: None,
    };
    assert_eq!(m.select(&by_address).unwrap().len(), 1);
    let wrong_port = Selector {
        port: Some(80),
        ..by_address
    };
    assert!(m.select(&wrong_port).is_err());
}
