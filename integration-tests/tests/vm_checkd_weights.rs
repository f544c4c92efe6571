//! checkd's verdicts reach the kernel: in the VM, ipvsd (ACTIVE) and checkd
//! run in a NAT director's namespace, HTTP real servers in theirs. A real
//! that starts answering 500 is taken out by the kernel table itself —
//! weight 0 in a quiescent service, removed from a non-quiescent one — and
//! client traffic through the VIP stops reaching it; when it answers 200
//! again, it comes back in both.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tandem_integration_tests::block_on;
use tandem_integration_tests::guest::run_in_vm_with;
use tandem_integration_tests::netns::{NatCluster, Netns};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_integration_tests::servers::{HttpMode, HttpServer, http_spread};
use tandem_proto::resource::v1 as rpb;

const VM_TIMEOUT: Duration = Duration::from_secs(300);
const REALS: [&str; 2] = ["198.51.100.101", "198.51.100.102"];

/// ipvsd's config: the same two reals behind :80 (quiescent) and :81
/// (not), checked over HTTP every 200 ms.
fn services() -> String {
    let mut config = String::from("virtual_services:\n");
    for (name, port, quiescent) in [("quiet", 80, true), ("strict", 81, false)] {
        config.push_str(&format!(
            "  - name: {name}\n    address: 203.0.113.10\n    port: {port}\n    scheduler: rr\n    forward: masq\n    \
             quiescent: {quiescent}\n    \
             check:\n      type: http\n      interval: 200ms\n      timeout: 150ms\n      rise: 2\n      fall: 2\n    \
             reals:\n"
        ));
        for real in REALS {
            config.push_str(&format!("      - address: {real}\n        port: 8080\n"));
        }
    }
    config
}

/// The weight of `real` in service `vip` (ADDR:PORT) of the kernel table,
/// if listed.
fn kernel_weight(director: &Netns, vip: &str, real: &str) -> Option<u32> {
    let out = director.command("ipvsadm").args(["-Ln"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    // TCP  203.0.113.10:80 rr
    //   -> 198.51.100.101:8080          Masq    1      0          0
    table
        .lines()
        .skip_while(|l| !(l.starts_with("TCP") && l.contains(&format!(" {vip} "))))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("->"))
        .find(|l| l.contains(&format!("-> {real}:")))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
}

fn table(director: &Netns) -> String {
    let out = director.command("ipvsadm").args(["-Ln"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits up to 10 s for the kernel to list `real` with `weight` (None:
/// absent) in both services, as `expected` says.
fn wait_kernel(director: &Netns, real: &str, expected: [(&str, Option<u32>); 2], logs: &Path) {
    for _ in 0..100 {
        if expected
            .iter()
            .all(|(vip, weight)| kernel_weight(director, vip, real) == *weight)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
    panic!(
        "{real}: the kernel never showed {expected:?}\n{}\n--- checkd.log\n{}\n--- ipvsd.log\n{}",
        table(director),
        log("checkd.log"),
        log("ipvsd.log")
    );
}

#[test]
fn a_failing_real_leaves_the_kernel_table_by_weight_or_removal_and_comes_back() {
    run_in_vm_with(
        "a_failing_real_leaves_the_kernel_table_by_weight_or_removal_and_comes_back",
        &["ipvsd", "checkd"],
        VM_TIMEOUT,
        || {
            let cluster = NatCluster::new("ckw", REALS.len()).unwrap();
            let (director, client) = (&cluster.director, &cluster.client);
            let servers: Vec<HttpServer> = cluster
                .reals
                .iter()
                .map(|real| HttpServer::start(&real.ns, "0.0.0.0:8080".parse().unwrap(), None))
                .collect();

            let dir = tempfile::tempdir().unwrap();
            let _ipvsd = Daemon::start_configured(&director.ns, "ipvsd", dir.path(), &services());
            block_on(async {
                let channel = tandem_daemon::client::connect_unix(&socket_in(dir.path(), "ipvsd"))
                    .await
                    .unwrap();
                rpb::resource_client::ResourceClient::new(channel)
                    .transition(rpb::TransitionRequest {
                        target: rpb::State::Active.into(),
                        epoch: 1,
                    })
                    .await
                    .unwrap();
            });
            let checkd = format!(
                "ipvsd_socket: {}\nmaintenance_dir: {}\nreconnect_max: 500ms\n",
                socket_in(dir.path(), "ipvsd").display(),
                dir.path().join("maintenance").display()
            );
            let _checkd = Daemon::start_configured(&director.ns, "checkd", dir.path(), &checkd);
            let (failing, healthy) = (REALS[1], REALS[0]);
            let serving = [("203.0.113.10:80", Some(1)), ("203.0.113.10:81", Some(1))];
            wait_kernel(&director.ns, failing, serving, dir.path());

            // The real answers 500: down after two failed probes.
            servers[1].set(HttpMode::Error);
            wait_kernel(
                &director.ns,
                failing,
                [("203.0.113.10:80", Some(0)), ("203.0.113.10:81", None)],
                dir.path(),
            );
            assert_eq!(
                kernel_weight(&director.ns, "203.0.113.10:80", healthy),
                Some(1),
                "{}",
                table(&director.ns)
            );
            // New connections through the VIP reach only the healthy real:
            // every answer is its 200 (the failed one would answer 500).
            for port in [80, 81] {
                let vip: SocketAddr = format!("203.0.113.10:{port}").parse().unwrap();
                let spread = http_spread(&client.ns, vip, 6);
                let expected = BTreeMap::from([("<h1>Test Page</h1>\n".to_owned(), 6)]);
                assert_eq!(spread, expected, "port {port}");
            }

            // Healthy again: back after two good probes, in both services.
            servers[1].set(HttpMode::Ok);
            wait_kernel(&director.ns, failing, serving, dir.path());
        },
    );
}
