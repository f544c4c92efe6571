//! ipvsd as a process in the VM, driven over `tandem.ipvs.v1` by tandemctl:
//! an operator drain of a real that holds a live client connection through
//! the VIP. The real gets weight 0 at once (new connections go elsewhere),
//! the drain waits while the connection lives, and once the client closes
//! it the real is removed from the kernel table.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use tandem_integration_tests::guest::run_in_vm_with;
use tandem_integration_tests::netns::{Lan, Netns};
use tandem_integration_tests::process::{Daemon, binary};
use tandem_proto::resource::v1 as rpb;

const VM_TIMEOUT: Duration = Duration::from_secs(300);
const SOCKET: &str = "/tmp/ipvsd-drain.sock";

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

fn activate() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let channel = tandem_daemon::client::connect_unix(Path::new(SOCKET))
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
            let front = Lan::new("drain-front").unwrap();
            let back = Lan::new("drain-back").unwrap();
            let director = front.host("dir", "203.0.113.1/24").unwrap();
            back.attach(&director.ns, "eth1", "198.51.100.1/24")
                .unwrap();
            director
                .ns
                .ip(&["addr", "add", "203.0.113.10/32", "dev", "eth0"])
                .unwrap();
            let forward = director
                .ns
                .command("sysctl")
                .args(["-qw", "net.ipv4.ip_forward=1"])
                .status()
                .unwrap();
            assert!(forward.success());
            let client = front.host("cli", "203.0.113.2/24").unwrap();
            let mut reals = Vec::new();
            for (i, name) in ["real-1", "real-2"].into_iter().enumerate() {
                let h = back
                    .host(name, &format!("198.51.100.{}/24", 101 + i))
                    .unwrap();
                h.ns.ip(&["route", "add", "default", "via", "198.51.100.1"])
                    .unwrap();
                holding_server(&h.ns, 8080, name);
                reals.push(h);
            }
            let config = "/tmp/ipvsd-drain.yaml";
            std::fs::write(
                config,
                "virtual_services:\n  - address: 203.0.113.10\n    port: 80\n    scheduler: rr\n    \
                 forward: masq\n    reals:\n      - address: 198.51.100.101\n        port: 8080\n      \
                 - address: 198.51.100.102\n        port: 8080\n",
            )
            .unwrap();
            let _ipvsd = {
                let mut d = Daemon::start_in(
                    &director.ns,
                    "ipvsd",
                    &["--listen", SOCKET, "--config", config],
                    Path::new("/tmp/ipvsd-drain.log"),
                );
                d.wait_for_socket(Path::new(SOCKET));
                d
            };
            activate();
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
