//! The effective-weight rules, one by one.

use super::*;
use crate::config::IpvsdConfig;

fn config(yaml: &str) -> IpvsdConfig {
    let c: IpvsdConfig =
        tandem_daemon::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
    tandem_daemon::DaemonConfig::validate(&c, "t.yaml").unwrap();
    c
}

const WEB: &str = "
virtual_services:
  - address: 198.51.100.10
    port: 80
    scheduler: wrr
    fallback: 198.51.100.200:80
    reals:
      - {address: 198.51.100.101, weight: 3}
      - {address: 198.51.100.102, weight: 1}
";

fn key() -> ServiceKey {
    config(WEB).virtual_services[0].key().unwrap()
}

fn id(last: u8) -> RealId {
    (key(), IpAddr::from([198, 51, 100, last]), 80)
}

fn weights(t: &Table) -> Vec<(u8, i32)> {
    t.services
        .values()
        .next()
        .unwrap()
        .dests
        .values()
        .map(|d| match d.addr {
            IpAddr::V4(a) => (a.octets()[3], d.weight),
            IpAddr::V6(_) => (0, d.weight),
        })
        .collect()
}

fn states(list: &[(u8, Health, bool)]) -> HashMap<RealId, RealState> {
    list.iter()
        .map(|(last, health, drained)| {
            (
                id(*last),
                RealState {
                    health: *health,
                    drain: if *drained {
                        Drain::Drained { timed_out: false }
                    } else {
                        Drain::None
                    },
                    ..RealState::default()
                },
            )
        })
        .collect()
}

#[test]
fn unchecked_and_healthy_reals_get_their_configured_weight() {
    let t = desired_table(
        &config(WEB).virtual_services,
        &states(&[(101, Health::Up, false)]),
    );
    assert_eq!(weights(&t), vec![(101, 3), (102, 1)]);
}

#[test]
fn a_failed_real_of_a_quiescent_service_stays_with_weight_zero() {
    let t = desired_table(
        &config(WEB).virtual_services,
        &states(&[(101, Health::Down, false)]),
    );
    assert_eq!(weights(&t), vec![(101, 0), (102, 1)]);
}

#[test]
fn a_failed_real_of_a_non_quiescent_service_is_removed() {
    let yaml = WEB.replace("scheduler: wrr", "scheduler: wrr\n    quiescent: false");
    let t = desired_table(
        &config(&yaml).virtual_services,
        &states(&[(101, Health::Down, false)]),
    );
    assert_eq!(weights(&t), vec![(102, 1)]);
}

#[test]
fn a_drained_real_gets_weight_zero_even_when_healthy() {
    let t = desired_table(
        &config(WEB).virtual_services,
        &states(&[(102, Health::Up, true)]),
    );
    assert_eq!(weights(&t), vec![(101, 3), (102, 0)]);
}

#[test]
fn the_fallback_server_comes_in_when_no_real_can_serve_and_leaves_after() {
    let down = desired_table(
        &config(WEB).virtual_services,
        &states(&[(101, Health::Down, false), (102, Health::Down, false)]),
    );
    assert_eq!(weights(&down), vec![(101, 0), (102, 0), (200, 1)]);
    let back = desired_table(
        &config(WEB).virtual_services,
        &states(&[(101, Health::Down, false), (102, Health::Up, false)]),
    );
    assert_eq!(weights(&back), vec![(101, 0), (102, 1)]);
}

#[test]
fn persistence_and_flags_reach_the_kernel_settings() {
    let yaml = "
virtual_services:
  - address: 198.51.100.10
    port: 443
    scheduler: sh
    scheduler_flags: [sh-fallback, sh-port]
    persistence: {timeout: 10m, netmask: 255.255.255.0}
";
    let c = config(yaml);
    let s = service_of(&c.virtual_services[0], c.virtual_services[0].key().unwrap());
    assert_eq!(
        s.flags,
        svc_flag::PERSISTENT | svc_flag::SCHED1 | svc_flag::SCHED2
    );
    assert_eq!((s.timeout, s.netmask), (600, 0xffff_ff00));
}
