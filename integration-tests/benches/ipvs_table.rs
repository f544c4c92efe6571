//! Benchmark: ipvsd's netlink client against `ipvsadm` in one VM boot (the
//! host has no IPVS). Prints figures and ratios; asserts nothing about speed.
//!
//! (a) load 1,000 services x 10 reals into an empty table (a new network
//!     namespace per trial): `ipvsadm -R` versus one pipelined
//!     `IpvsClient::execute`;
//! (a') the same load again after `ipvsadm -C`, in one namespace;
//! (b) change one real's weight: per-operation cost with a 10-real table and
//!     with the 10,000-real table (should not depend on table size);
//! (c) dump the whole table: `ipvsadm-save -n` versus `IpvsClient::table`;
//! (d) the ipvsd daemon with that table: time to STANDBY from an empty
//!     IPVS (a new namespace) and again after a restart (adoption), and its
//!     idle RSS.
//!
//! Run (root): `cargo build --release --bins && cargo bench -p
//! tandem-integration-tests --bench ipvs_table` ((d) runs the release ipvsd).

#![allow(
    clippy::unwrap_used,
    reason = "benchmark: a panic is the failure report"
)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tandem_integration_tests::block_on;
use tandem_integration_tests::guest::IN_VM;
use tandem_integration_tests::netns::Netns;
use tandem_integration_tests::process::rss_kib;
use tandem_ipvsd::ipvs::client::IpvsClient;
use tandem_ipvsd::ipvs::codec::{self, Request};
use tandem_ipvsd::ipvs::types::{Dest, Forward, Protocol, Service, ServiceKey, Tunnel};
use tokio::time::Instant;

const SERVICES: u16 = 1000;
const REALS: u8 = 10;
const TRIALS: usize = 3;

fn key(i: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: "198.51.100.10".parse().unwrap(),
        port: 10_000 + i,
    }
}

fn real(r: u8, weight: i32) -> Dest {
    Dest {
        addr: format!("203.0.113.{}", r + 1).parse().unwrap(),
        port: 80,
        forward: Forward::Route,
        tunnel: Tunnel::Ipip,
        weight,
        upper: 0,
        lower: 0,
    }
}

fn requests(services: u16) -> Vec<Request> {
    let mut out = Vec::new();
    for i in 0..services {
        let service = Service {
            key: key(i),
            scheduler: "wlc".into(),
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe_name: None,
        };
        out.push(codec::new_service(&service).unwrap());
        for r in 0..REALS {
            out.push(codec::new_dest(&key(i), &real(r, 1)).unwrap());
        }
    }
    out
}

fn rules(services: u16) -> String {
    let mut text = String::new();
    for i in 0..services {
        text.push_str(&format!("-A -t 198.51.100.10:{} -s wlc\n", 10_000 + i));
        for r in 0..REALS {
            text.push_str(&format!(
                "-a -t 198.51.100.10:{} -r 203.0.113.{}:80 -g -w 1\n",
                10_000 + i,
                r + 1
            ));
        }
    }
    text
}

fn run(cmd: &str, stdin: Option<&str>) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    assert!(child.wait().unwrap().success(), "{cmd} failed");
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One figure's line: the peer's time, tandem's, and the speed-up.
fn versus(what: &str, peer_name: &str, peer: Duration, ours: Duration) {
    println!(
        "{what} {peer_name} {:>8.1} ms   tandem {:>8.1} ms   speed-up {:.1}x",
        ms(peer),
        ms(ours),
        peer.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Median per-operation time of `n` weight changes on service 0's first real.
async fn edit_cost(ipvs: &mut IpvsClient, n: usize) -> Duration {
    let mut each = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        ipvs.edit_dest(&key(0), &real(0, 1 + (i % 2) as i32))
            .await
            .unwrap();
        each.push(start.elapsed());
    }
    median(each)
}

/// The benchmark's table loaded with one pipelined `execute`: its time.
async fn load(ipvs: &mut IpvsClient) -> Duration {
    let batch = requests(SERVICES);
    let start = Instant::now();
    let outcomes = ipvs.execute(batch).await.unwrap();
    let took = start.elapsed();
    assert!(outcomes.iter().all(Result::is_ok));
    took
}

/// One load into the empty IPVS of a namespace of its own: `ipvsadm -R`
/// (`peer`) or one pipelined [`IpvsClient::execute`]. The namespace, its
/// table flushed, goes into `kept`.
fn load_in_fresh_namespace(peer: bool, text: &str, kept: &mut Vec<Netns>) -> Duration {
    let ns = Netns::new("ipvs-load").unwrap();
    let took = ns
        .enter(|| {
            let took = if peer {
                run("ipvsadm -R", Some(text))
            } else {
                block_on(async { load(&mut IpvsClient::connect().await.unwrap()).await })
            };
            let saved = Command::new("ipvsadm-save").arg("-n").output().unwrap();
            let lines = String::from_utf8_lossy(&saved.stdout).lines().count();
            let expected = usize::from(SERVICES) * (1 + usize::from(REALS));
            assert_eq!(
                lines, expected,
                "the load left {lines} rules, not {expected}"
            );
            run("ipvsadm -C", None);
            took
        })
        .unwrap();
    kept.push(ns);
    took
}

async fn in_guest() {
    let text = rules(SERVICES);
    let mut ipvs = IpvsClient::connect().await.unwrap();

    // (a') reload after `ipvsadm -C` in one namespace: the kernel keeps the
    // flushed reals in its destination trash and searches it for every new
    // real, a cost both sides pay. A first load, so that every trial (the
    // peer's first too) starts with a full trash.
    ipvs.execute(requests(SERVICES)).await.unwrap();
    let (mut peer, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        run("ipvsadm -C", None);
        peer.push(run("ipvsadm -R", Some(&text)));
        run("ipvsadm -C", None);
        ours.push(load(&mut ipvs).await);
    }
    let (peer_reload, our_reload) = (median(peer), median(ours));

    // (a) from empty: each load in a new namespace, alternating peer and ours.
    // The namespaces (flushed) live to the end: no teardown runs in the
    // kernel while anything else is timed.
    let (mut peer, mut ours, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        peer.push(load_in_fresh_namespace(true, &text, &mut kept));
        ours.push(load_in_fresh_namespace(false, &text, &mut kept));
    }
    let (peer_load, our_load) = (median(peer), median(ours));

    let (mut peer, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        peer.push(run("ipvsadm-save -n", None));
        let start = Instant::now();
        let table = ipvs.table().await.unwrap();
        ours.push(start.elapsed());
        assert_eq!(table.len(), usize::from(SERVICES));
    }
    let (peer_dump, our_dump) = (median(peer), median(ours));

    let noops: Vec<Request> = (0..usize::from(SERVICES) * (1 + usize::from(REALS)))
        .map(|_| codec::get_info().unwrap())
        .collect();
    let start = Instant::now();
    ipvs.execute(noops).await.unwrap();
    let floor = start.elapsed();

    let big = edit_cost(&mut ipvs, 1000).await;
    run("ipvsadm -C", None);
    ipvs.execute(requests(1)).await.unwrap();
    let small = edit_cost(&mut ipvs, 1000).await;

    println!(
        "ipvs_table: {SERVICES} services x {REALS} reals, medians of {TRIALS} (one VM boot, TCG)"
    );
    versus(
        "(a) load from empty (a new namespace each):",
        "ipvsadm -R",
        peer_load,
        our_load,
    );
    versus(
        "(a') reload after ipvsadm -C:",
        "ipvsadm -R",
        peer_reload,
        our_reload,
    );
    println!(
        "    floor: the same number of GET_INFO requests, pipelined: {:.1} ms",
        ms(floor)
    );
    println!(
        "(b) edit one weight: {:.3} ms with {} reals, {:.3} ms with {} reals   ratio {:.2}",
        ms(small),
        REALS,
        ms(big),
        usize::from(SERVICES) * usize::from(REALS),
        big.as_secs_f64() / small.as_secs_f64()
    );
    versus("(c) dump: ", "ipvsadm-save -n", peer_dump, our_dump);

    run("ipvsadm -C", None);
    daemon_figures().await;
    drop(kept);
}

/// ipvsd's config holding the benchmark's table.
fn config(services: u16) -> String {
    let mut text = String::from("virtual_services:\n");
    for i in 0..services {
        text.push_str(&format!(
            "  - address: 198.51.100.10\n    port: {}\n    reals:\n",
            10_000 + i
        ));
        for r in 0..REALS {
            text.push_str(&format!("      - address: 203.0.113.{}\n", r + 1));
        }
    }
    text
}

/// (d): the daemon loads the table at STANDBY, then adopts it after a restart.
async fn daemon_figures() {
    use tandem_integration_tests::process::Daemon;
    use tandem_proto::resource::v1 as pb;

    let path = "/tmp/ipvsd-bench.yaml";
    std::fs::write(path, config(SERVICES)).unwrap();
    let socket = std::path::Path::new("/tmp/ipvsd-bench.sock");
    let standby = |epoch: u64| async move {
        let channel = tandem_daemon::client::connect_unix(socket).await.unwrap();
        let start = Instant::now();
        pb::resource_client::ResourceClient::new(channel)
            .transition(pb::TransitionRequest {
                target: pb::State::Standby.into(),
                epoch,
            })
            .await
            .unwrap();
        start.elapsed()
    };
    // An empty IPVS of its own, as a freshly booted director has.
    let ns = Netns::new("ipvsd-bench").unwrap();
    let start = || {
        // As deploy/systemd/tandem-ipvsd.service runs it.
        let mut d = ns
            .enter(|| {
                Daemon::start_logging_env(
                    "ipvsd",
                    &["--listen", "/tmp/ipvsd-bench.sock", "--config", path],
                    std::path::Path::new("/tmp/ipvsd-bench.log"),
                    &[("MALLOC_ARENA_MAX", "1")],
                )
            })
            .unwrap();
        d.wait_for_socket(socket);
        d
    };
    let first = start();
    let (empty, _) = rss_kib(first.pid());
    let load = standby(1).await;
    first.signal(rustix::process::Signal::KILL);
    drop(first);
    let second = start();
    let adopt = standby(2).await;
    // Idle: past one drift check (5 s), which dumps the whole table.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (rss, peak) = rss_kib(second.pid());
    println!(
        "(d) ipvsd with {} reals: STANDBY from empty {:.0} ms, after a restart (adopt) {:.0} ms; \
         idle RSS {:.1} MiB (peak {:.1} MiB; {:.1} MiB before any table; MALLOC_ARENA_MAX=1 as the unit sets; goal under 15 MiB)",
        usize::from(SERVICES) * usize::from(REALS),
        ms(load),
        ms(adopt),
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        empty as f64 / 1024.0
    );
    drop(second);
    ns.enter(|| run("ipvsadm -C", None)).unwrap();
}

fn main() {
    if std::env::var_os(IN_VM).is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(in_guest());
        return;
    }
    tandem_integration_tests::require_root();
    let out = tandem_integration_tests::guest::run_self_in_vm_with(
        "--bench",
        &["ipvsd"],
        Duration::from_secs(900),
    );
    print!("{}", out.output);
    assert_eq!(out.status, 0, "the benchmark failed in the VM");
}
