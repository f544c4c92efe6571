//! ipvsd as a process in the VM, in a director namespace, with real clients
//! and real servers in theirs:
//! - an operator drain (tandemctl) of a real holding a live connection: the
//!   real gets weight 0 at once (new connections go elsewhere), the drain
//!   waits while the connection lives, then removes the real;
//! - a second director as sync backup: its resource status shows the
//!   connections synced from the master (a warm standby);
//! - ipvsd killed with SIGKILL and restarted while a client keeps making
//!   requests: none fails, and the restart issues no kernel operation.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use tandem_integration_tests::block_on;
use tandem_integration_tests::guest::run_in_vm_with;
use tandem_integration_tests::netns::{NatCluster, Netns};
use tandem_integration_tests::process::{Daemon, binary};
use tandem_proto::resource::v1 as rpb;

const VM_TIMEOUT: Duration = Duration::from_secs(300);
const SOCKET: &str = "/tmp/ipvsd-drain.sock";
const NAT_CONFIG: &str = "virtual_services:\n  - address: 203.0.113.10\n    port: 80\n    scheduler: rr\n    \
                          forward: masq\n    reals:\n      - address: 198.51.100.101\n        port: 8080\n      \
                          - address: 198.51.100.102\n        port: 8080\n";

/// Serves on `port` in `ns`: each connection gets `name` and a newline, then
/// is held open until the client closes it.
fn holding_server(ns: &Netns, port: u16, name: &'static str) {
    let listener = ns
        .enter(move || TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = writeln!(stream, "{name}");
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            });
        }
    });
}

/// Opens a connection from `client` to `vip`; returns it and the real's name.
fn connect(client: &Netns, vip: SocketAddr) -> (TcpStream, String) {
    client
        .enter(move || {
            let s = TcpStream::connect_timeout(&vip, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut name = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut name)
                .unwrap();
            (s, name.trim().to_owned())
        })
        .unwrap()
}

fn tandemctl(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("tandemctl"));
    cmd.args(["--socket", SOCKET, "ipvs"]).args(args);
    cmd
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tandemctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn resource(socket: &str) -> rpb::resource_client::ResourceClient<tonic::transport::Channel> {
    let channel = tandem_daemon::client::connect_unix(Path::new(socket))
        .await
        .unwrap();
    rpb::resource_client::ResourceClient::new(channel)
}

fn transition(socket: &str, target: rpb::State, epoch: u64) {
    block_on(async {
        resource(socket)
            .await
            .transition(rpb::TransitionRequest {
                target: target.into(),
                epoch,
            })
            .await
            .unwrap();
    });
}

fn status(socket: &str) -> rpb::ResourceStatus {
    block_on(async {
        resource(socket)
            .await
            .get_status(rpb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    })
}

/// The NAT cluster with two holding servers on :8080.
fn nat(label: &str) -> NatCluster {
    let cluster = NatCluster::new(label, 2).unwrap();
    for (real, name) in cluster.reals.iter().zip(["real-1", "real-2"]) {
        holding_server(&real.ns, 8080, name);
    }
    cluster
}

/// Starts ipvsd in `ns` with `config` (written to a file), serving `socket`.
fn ipvsd(ns: &Netns, config: &str, socket: &str, log: &str) -> Daemon {
    let path = format!("{socket}.yaml");
    std::fs::write(&path, config).unwrap();
    let mut d = Daemon::start_in(
        ns,
        "ipvsd",
        &["--listen", socket, "--config", &path],
        Path::new(log),
    );
    d.wait_for_socket(Path::new(socket));
    d
}

/// The line of `list` output for real `addr`.
fn real_line(list: &str, addr: &str) -> String {
    list.lines()
        .find(|l| l.contains(&format!("-> {addr}:")))
        .unwrap_or_else(|| panic!("no line for {addr} in:\n{list}"))
        .to_owned()
}

#[test]
fn a_drain_waits_for_a_live_connection_then_removes_the_real() {
    run_in_vm_with(
        "a_drain_waits_for_a_live_connection_then_removes_the_real",
        &["ipvsd", "tandemctl"],
        VM_TIMEOUT,
        || {
            let cluster = nat("drain");
            let (director, client) = (&cluster.director, &cluster.client);
            let _ipvsd = ipvsd(&director.ns, NAT_CONFIG, SOCKET, "/tmp/ipvsd-drain.log");
            transition(SOCKET, rpb::State::Active, 1);
            let vip: SocketAddr = "203.0.113.10:80".parse().unwrap();

            // A client holds a connection to one real; that real is drained.
            let (held, name) = connect(&client.ns, vip);
            let drained = if name == "real-1" {
                "198.51.100.101"
            } else {
                "198.51.100.102"
            };
            let mut drain =
                tandemctl(&["drain", drained, "--wait", "--remove", "--timeout", "60s"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
            std::thread::sleep(Duration::from_secs(1));

            let list = stdout(&tandemctl(&["list"]).output().unwrap());
            let line = real_line(&list, drained);
            // -> ADDR:PORT Forward Weight Eff Health Drain ActiveConn InActConn
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                (cols[3], cols[4], cols[6], cols[7]),
                ("1", "0", "draining", "1"),
                "the drained real should have weight 1, effective 0, be draining, 1 active connection:\n{list}"
            );
            // New connections all go to the other real.
            for _ in 0..6 {
                let (s, other) = connect(&client.ns, vip);
                assert_ne!(other, name, "a draining real got a new connection");
                drop(s);
            }
            assert!(
                drain.try_wait().unwrap().is_none(),
                "the drain ended while a connection was open"
            );

            drop(held);
            let mut waited = 0;
            while drain.try_wait().unwrap().is_none() {
                assert!(
                    waited < 150,
                    "the drain did not end after the connection closed"
                );
                std::thread::sleep(Duration::from_millis(100));
                waited += 1;
            }
            let out = drain.wait_with_output().unwrap();
            let said = stdout(&out);
            assert!(said.contains("removed"), "{said}");
            let saved = director
                .ns
                .command("ipvsadm-save")
                .arg("-n")
                .output()
                .unwrap();
            let kernel = String::from_utf8_lossy(&saved.stdout).into_owned();
            assert!(
                !kernel.contains(drained),
                "the drained real is still in the kernel:\n{kernel}"
            );
            assert_eq!(
                kernel.lines().filter(|l| l.starts_with("-a")).count(),
                1,
                "{kernel}"
            );
        },
    );
}

#[test]
fn a_sync_backup_reports_the_connections_synced_from_the_master() {
    run_in_vm_with(
        "a_sync_backup_reports_the_connections_synced_from_the_master",
        &["ipvsd"],
        VM_TIMEOUT,
        || {
            let cluster = nat("sync");
            let standby = cluster.front.host("dir-b", "203.0.113.3/24").unwrap();
            cluster
                .back
                .attach(&standby.ns, "eth1", "198.51.100.3/24")
                .unwrap();
            let config = format!("sync: {{interface: eth0, sync_id: 7}}\n{NAT_CONFIG}");
            let (master_sock, backup_sock) = ("/tmp/ipvsd-master.sock", "/tmp/ipvsd-backup.sock");
            let _master = ipvsd(
                &cluster.director.ns,
                &config,
                master_sock,
                "/tmp/ipvsd-master.log",
            );
            let _backup = ipvsd(&standby.ns, &config, backup_sock, "/tmp/ipvsd-backup.log");
            transition(master_sock, rpb::State::Active, 1);
            transition(backup_sock, rpb::State::Standby, 1);

            let vip: SocketAddr = "203.0.113.10:80".parse().unwrap();
            let held: Vec<TcpStream> = (0..3).map(|_| connect(&cluster.client.ns, vip).0).collect();
            // The master flushes sync messages about every 2 s; ipvsd looks
            // every drift_check_interval (5 s).
            let mut detail = String::new();
            for _ in 0..40 {
                detail = status(backup_sock).detail;
                if detail.ends_with("sync backup, 3 connections known") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            assert_eq!(
                detail, "kernel table in sync; sync backup, 3 connections known",
                "the backup does not show the master's 3 connections"
            );
            let master = status(master_sock);
            assert_eq!(master.detail, "kernel table in sync; sync master");
            assert_eq!(master.health(), rpb::Health::Ok);
            drop(held);
        },
    );
}

#[test]
fn ipvsd_killed_and_restarted_under_traffic_fails_no_request_and_issues_no_operation() {
    run_in_vm_with(
        "ipvsd_killed_and_restarted_under_traffic_fails_no_request_and_issues_no_operation",
        &["ipvsd"],
        VM_TIMEOUT,
        || {
            let cluster = nat("restart");
            let socket = "/tmp/ipvsd-restart.sock";
            let first = ipvsd(
                &cluster.director.ns,
                NAT_CONFIG,
                socket,
                "/tmp/ipvsd-restart-1.log",
            );
            transition(socket, rpb::State::Active, 1);

            let vip: SocketAddr = "203.0.113.10:80".parse().unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let streaming = {
                let stop = stop.clone();
                let client = &cluster.client.ns;
                client
                    .enter(move || {
                        // Requests until told to stop, at most 3,000 or 60 s.
                        std::thread::spawn(move || {
                            let (mut ok, mut failed) = (0u32, Vec::new());
                            let began = std::time::SystemTime::now();
                            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                                && ok + u32::try_from(failed.len()).unwrap() < 3_000
                                && began.elapsed().unwrap() < Duration::from_secs(60)
                            {
                                let attempt =
                                    TcpStream::connect_timeout(&vip, Duration::from_secs(2))
                                        .and_then(|s| {
                                            s.set_read_timeout(Some(Duration::from_secs(2)))?;
                                            let mut name = String::new();
                                            BufReader::new(s).read_line(&mut name)?;
                                            Ok(name)
                                        });
                                match attempt {
                                    Ok(name) if name.starts_with("real-") => ok += 1,
                                    Ok(other) => failed.push(format!("answer {other:?}")),
                                    Err(e) => failed.push(e.to_string()),
                                }
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            (ok, failed)
                        })
                    })
                    .unwrap()
            };
            std::thread::sleep(Duration::from_secs(1));
            first.signal(rustix::process::Signal::KILL);
            drop(first);
            std::thread::sleep(Duration::from_millis(500));
            let _second = ipvsd(
                &cluster.director.ns,
                NAT_CONFIG,
                socket,
                "/tmp/ipvsd-restart-2.log",
            );
            transition(socket, rpb::State::Active, 2);
            std::thread::sleep(Duration::from_secs(1));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (ok, failed) = streaming.join().unwrap();
            assert!(
                failed.is_empty(),
                "{} of {} requests failed: {failed:?}",
                failed.len(),
                ok as usize + failed.len()
            );
            assert!(ok > 20, "only {ok} requests were made");
            let log = std::fs::read_to_string("/tmp/ipvsd-restart-2.log").unwrap();
            assert!(
                log.contains("kernel table reconciled") && log.contains("operations=0"),
                "the restarted ipvsd issued operations:\n{log}"
            );
        },
    );
}
