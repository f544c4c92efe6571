//! Real traffic through the VM kernel's IPVS, programmed by ipvsd's client
//! and reconciler: a client namespace connects to the VIP; three real-server
//! namespaces run real HTTP servers that answer with their own name; the
//! spread must match the scheduler exactly (rr equal, wrr by weight), and a
//! real set to weight 0 gets no new connections. Direct routing and NAT.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tandem_integration_tests::guest::run_in_vm;
use tandem_integration_tests::netns::{Host, Lan, NatCluster, Netns};
use tandem_integration_tests::servers::{http_spread, named_http_server};
use tandem_ipvsd::backend::KernelBackend;
use tandem_ipvsd::ipvs::types::{Dest, Forward, Protocol, Service, ServiceKey, Tunnel};
use tandem_ipvsd::reconcile::reconcile;
use tandem_ipvsd::table::{ServiceSpec, Table};

const VM_TIMEOUT: Duration = Duration::from_secs(300);

fn service(vip: IpAddr, scheduler: &str) -> Service {
    Service {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: vip,
            port: 80,
        },
        scheduler: scheduler.into(),
        flags: 0,
        timeout: 0,
        netmask: u32::MAX,
        pe_name: None,
    }
}

fn real(addr: &IpAddr, port: u16, forward: Forward, weight: i32) -> Dest {
    Dest {
        addr: *addr,
        port,
        forward,
        tunnel: Tunnel::Ipip,
        weight,
        upper: 0,
        lower: 0,
    }
}

/// A table of one TCP service on `vip:80` with `reals` (address, port,
/// method, weight).
fn one_service(vip: IpAddr, scheduler: &str, reals: &[(IpAddr, u16, Forward, i32)]) -> Table {
    let spec = reals.iter().fold(
        ServiceSpec::new(service(vip, scheduler)),
        |s, (a, p, f, w)| s.with(real(a, *p, *f, *w)),
    );
    let mut table = Table::new();
    table.insert(spec);
    table
}

/// Programs `table` into the IPVS of namespace `director` with the reconciler.
fn program(director: &Netns, table: Table) {
    director
        .enter(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut kernel = KernelBackend::connect().await.unwrap();
                    let report = reconcile(&mut kernel, &table, false).await.unwrap();
                    assert!(report.converged(), "{report:?}");
                });
        })
        .unwrap();
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn direct_routing_spreads_exactly_by_scheduler_and_weight() {
    run_in_vm(
        "direct_routing_spreads_exactly_by_scheduler_and_weight",
        VM_TIMEOUT,
        || {
            let lan = Lan::new("dr").unwrap();
            let director = lan.host("dir", "198.51.100.1/24").unwrap();
            let client = lan.host("cli", "198.51.100.2/24").unwrap();
            let vip: IpAddr = "198.51.100.10".parse().unwrap();
            director
                .ns
                .ip(&["addr", "add", "198.51.100.10/32", "dev", "eth0"])
                .unwrap();
            let names = ["real-1", "real-2", "real-3"];
            let reals: Vec<Host> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let h = lan
                        .host(name, &format!("198.51.100.{}/24", 101 + i))
                        .unwrap();
                    // The seed's "ARP hidden", modern form: VIP on lo, never answered for.
                    h.ns.ip(&["addr", "add", "198.51.100.10/32", "dev", "lo"])
                        .unwrap();
                    h.ns.set_sysctl("net.ipv4.conf.all.arp_ignore", "1")
                        .unwrap();
                    h.ns.set_sysctl("net.ipv4.conf.all.arp_announce", "2")
                        .unwrap();
                    named_http_server(&h.ns, 80, name);
                    h
                })
                .collect();
            let addrs: Vec<IpAddr> = reals.iter().map(|h| IpAddr::V4(h.addr)).collect();
            let vip_port = SocketAddr::new(vip, 80);
            let route = |weights: &[i32]| -> Vec<_> {
                addrs
                    .iter()
                    .zip(weights)
                    .map(|(a, w)| (*a, 80, Forward::Route, *w))
                    .collect()
            };

            program(&director.ns, one_service(vip, "rr", &route(&[1, 1, 1])));
            assert_eq!(
                http_spread(&client.ns, vip_port, 30),
                counts(&[("real-1", 10), ("real-2", 10), ("real-3", 10)])
            );

            program(&director.ns, one_service(vip, "wrr", &route(&[3, 2, 1])));
            assert_eq!(
                http_spread(&client.ns, vip_port, 60),
                counts(&[("real-1", 30), ("real-2", 20), ("real-3", 10)])
            );

            program(&director.ns, one_service(vip, "wrr", &route(&[1, 1, 0])));
            let after = http_spread(&client.ns, vip_port, 30);
            assert_eq!(
                after.get("real-3"),
                None,
                "a real with weight 0 got new connections: {after:?}"
            );
            assert_eq!(after.values().sum::<usize>(), 30);
        },
    );
}

#[test]
fn nat_spreads_exactly_and_translates_the_port() {
    run_in_vm(
        "nat_spreads_exactly_and_translates_the_port",
        VM_TIMEOUT,
        || {
            let cluster = NatCluster::new("nat", 3).unwrap();
            let (director, client, reals) = (&cluster.director, &cluster.client, &cluster.reals);
            for (real, name) in reals.iter().zip(["real-1", "real-2", "real-3"]) {
                named_http_server(&real.ns, 8080, name);
            }
            let vip: IpAddr = "203.0.113.10".parse().unwrap();
            let nat: Vec<_> = reals
                .iter()
                .map(|h| (IpAddr::V4(h.addr), 8080, Forward::Masq, 1))
                .collect();
            program(&director.ns, one_service(vip, "rr", &nat));
            assert_eq!(
                http_spread(&client.ns, SocketAddr::new(vip, 80), 30),
                counts(&[("real-1", 10), ("real-2", 10), ("real-3", 10)])
            );
        },
    );
}
