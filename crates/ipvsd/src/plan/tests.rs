//! The planner: minimal, ordered, and exact (applying the plan to the
//! current table yields the desired one), including under random tables.

use proptest::prelude::*;

use super::*;
use crate::ipvs::types::{Forward, Protocol, Tunnel};
use crate::table::ServiceSpec;

fn key(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: "198.51.100.10".parse().unwrap(),
        port,
    }
}

fn service(port: u16, scheduler: &str) -> Service {
    Service {
        key: key(port),
        scheduler: scheduler.into(),
        flags: 0,
        timeout: 0,
        netmask: u32::MAX,
        pe_name: None,
    }
}

fn real(last: u8, weight: i32) -> Dest {
    Dest {
        addr: IpAddr::from([198, 51, 100, last]),
        port: 80,
        forward: Forward::Route,
        tunnel: Tunnel::Ipip,
        weight,
        upper: 0,
        lower: 0,
    }
}

fn table(specs: Vec<ServiceSpec>) -> Table {
    let mut t = Table::new();
    for s in specs {
        t.insert(s);
    }
    t
}

#[test]
fn identical_tables_need_nothing() {
    let t = table(vec![ServiceSpec::new(service(80, "rr")).with(real(101, 1))]);
    assert!(plan(&t, &t).is_empty());
}

#[test]
fn one_weight_change_is_one_edit() {
    let have = table(vec![
        ServiceSpec::new(service(80, "wrr"))
            .with(real(101, 1))
            .with(real(102, 1)),
    ]);
    let want = table(vec![
        ServiceSpec::new(service(80, "wrr"))
            .with(real(101, 1))
            .with(real(102, 0)),
    ]);
    assert_eq!(
        plan(&have, &want),
        vec![Op::EditDest(key(80), real(102, 0))]
    );
}

#[test]
fn a_new_service_comes_with_its_reals_after_it() {
    let want = table(vec![
        ServiceSpec::new(service(80, "rr"))
            .with(real(101, 1))
            .with(real(102, 1)),
    ]);
    assert_eq!(
        plan(&Table::new(), &want),
        vec![
            Op::AddService(service(80, "rr")),
            Op::AddDest(key(80), real(101, 1)),
            Op::AddDest(key(80), real(102, 1)),
        ]
    );
}

#[test]
fn replacing_every_real_adds_before_it_removes() {
    let have = table(vec![ServiceSpec::new(service(80, "rr")).with(real(101, 1))]);
    let want = table(vec![ServiceSpec::new(service(80, "rr")).with(real(102, 1))]);
    assert_eq!(
        plan(&have, &want),
        vec![
            Op::AddDest(key(80), real(102, 1)),
            Op::DeleteDest(key(80), real(101, 1).addr, 80),
        ]
    );
}

#[test]
fn scheduler_change_edits_and_removed_services_go_last() {
    let have = table(vec![
        ServiceSpec::new(service(80, "rr")).with(real(101, 1)),
        ServiceSpec::new(service(443, "rr")).with(real(101, 1)),
    ]);
    let want = table(vec![
        ServiceSpec::new(service(80, "wlc")).with(real(101, 1)),
    ]);
    assert_eq!(
        plan(&have, &want),
        vec![
            Op::EditService(service(80, "wlc")),
            Op::DeleteService(key(443))
        ]
    );
}

fn arb_table() -> impl Strategy<Value = Table> {
    // Up to 4 services (ports 80..84), each with up to 4 of 6 reals, random
    // schedulers and weights: small enough to hit every overlap case.
    let spec = (
        80u16..84,
        prop::sample::select(vec!["rr", "wrr", "lc"]),
        prop::collection::btree_map(101u8..107, 0i32..3, 0..4),
    )
        .prop_map(|(port, sched, reals)| {
            reals
                .into_iter()
                .fold(ServiceSpec::new(service(port, sched)), |s, (last, w)| {
                    s.with(real(last, w))
                })
        });
    prop::collection::vec(spec, 0..4).prop_map(table)
}

proptest! {
    #[test]
    fn applying_the_plan_reaches_the_desired_table(have in arb_table(), want in arb_table()) {
        let ops = plan(&have, &want);
        let mut t = have.clone();
        for op in &ops {
            prop_assert!(apply_to(&mut t, op), "the kernel would refuse {op}");
        }
        prop_assert_eq!(&t, &want);
        prop_assert!(plan(&t, &want).is_empty());
    }

    #[test]
    fn no_kept_service_is_ever_left_without_reals(have in arb_table(), want in arb_table()) {
        let mut t = have.clone();
        for op in plan(&have, &want) {
            apply_to(&mut t, &op);
            for (k, spec) in &t.services {
                let kept = have.services.get(k).is_some_and(|h| !h.dests.is_empty())
                    && want.services.get(k).is_some_and(|w| !w.dests.is_empty());
                prop_assert!(!kept || !spec.dests.is_empty(), "{} emptied after {}", k, op);
            }
        }
    }
}
