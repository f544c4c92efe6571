//! `through_vip` checks in the kernel VM: a DR director (ipvsd ACTIVE, vipd
//! ACTIVE with `accept_local` on the reals' side, checkd) and two DR real
//! servers with the VIP on `lo`. Each real of the `:80` service is probed
//! through the VIP by way of its own probe service (a firewall mark); the
//! `:81` service checks the same reals the classic way, at their own
//! address. A real that loses the VIP from `lo` still answers at its own
//! address but blackholes client traffic: the through-VIP check takes it
//! out of `:80` while the classic check keeps calling it healthy; with the
//! VIP back it returns. The same holds on a STANDBY director, whose vipd
//! hides the VIP on `lo`. And probes leave IPVS no connection entry that could
//! carry a later probe, reusing the source port, to the wrong real: UDP is
//! scheduled one packet at a time, TCP probes end with a reset (CLOSE, which
//! a new SYN reschedules) rather than a FIN (FIN_WAIT, which it follows).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_integration_tests::block_on;
use tandem_integration_tests::guest::run_in_vm_with;
use tandem_integration_tests::netns::{NatCluster, Netns};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_integration_tests::servers::{HttpMode, HttpServer, http_spread, udp_echo};
use tandem_proto::check::v1 as cpb;
use tandem_proto::resource::v1 as rpb;

const VM_TIMEOUT: Duration = Duration::from_secs(300);
const REALS: [&str; 2] = ["198.51.100.101", "198.51.100.102"];
const VIP: &str = "203.0.113.10";

/// ipvsd's config: the two DR reals behind `:80`, checked through the VIP,
/// and behind `:81`, checked at their own address; both non-quiescent.
fn services() -> String {
    let mut config = String::from("virtual_services:\n");
    for (name, port, through_vip) in [("vip", 80, true), ("classic", 81, false)] {
        config.push_str(&format!(
            "  - name: {name}\n    address: {VIP}\n    port: {port}\n    scheduler: rr\n    forward: route\n    \
             quiescent: false\n    \
             check:\n      type: http\n      port: 80\n      through_vip: {through_vip}\n      \
             interval: 200ms\n      timeout: 150ms\n      rise: 2\n      fall: 2\n{}",
            reals_yaml()
        ));
    }
    config
}

/// ipvsd's config: the two DR reals behind TCP `:80` and UDP `:7`, each
/// checked through the VIP every 100 ms.
fn probe_services() -> String {
    let mut config = String::from("virtual_services:\n");
    for (name, protocol, port, check) in [
        ("web", "tcp", 80, "type: http"),
        ("echo", "udp", 7, "type: udp, send: ping, receive: pong"),
    ] {
        config.push_str(&format!(
            "  - name: {name}\n    protocol: {protocol}\n    address: {VIP}\n    port: {port}\n    \
             forward: route\n    \
             check: {{{check}, through_vip: true, interval: 100ms, timeout: 80ms, rise: 1, fall: 1}}\n{}",
            reals_yaml()
        ));
    }
    config
}

/// A service's `reals:` block holding [`REALS`].
fn reals_yaml() -> String {
    REALS
        .iter()
        .fold(String::from("    reals:\n"), |mut out, real| {
            out.push_str(&format!("      - address: {real}\n"));
            out
        })
}

fn transition(socket: &Path, target: rpb::State, epoch: u64) {
    block_on(async {
        let channel = tandem_daemon::client::connect_unix(socket).await.unwrap();
        rpb::resource_client::ResourceClient::new(channel)
            .transition(rpb::TransitionRequest {
                target: target.into(),
                epoch,
            })
            .await
            .unwrap();
    });
}

/// Each target's health and last probe, by `service real`, e.g.
/// `vip 198.51.100.101` → (UP, "ok", mark).
fn targets(socket: &Path) -> BTreeMap<String, (String, String, u32)> {
    let reply = block_on(async {
        let channel = tandem_daemon::client::connect_unix(socket).await.unwrap();
        cpb::check_client::CheckClient::new(channel)
            .list_targets(cpb::ListTargetsRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    reply
        .targets
        .iter()
        .map(|t| {
            let last = t.last.as_ref().map_or("not probed".to_owned(), |l| {
                if l.ok { "ok".into() } else { l.reason.clone() }
            });
            let address = t.key.as_ref().unwrap().address.clone();
            (
                format!("{} {address}", t.service_name),
                (t.health().as_str_name().to_owned(), last, t.probe_mark),
            )
        })
        .collect()
}

fn kernel_table(director: &Netns) -> String {
    let out = director.command("ipvsadm").args(["-Ln"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The reals the kernel lists under `TCP VIP:port`.
fn kernel_reals(director: &Netns, port: u16) -> Vec<String> {
    let table = kernel_table(director);
    let header = format!("TCP  {VIP}:{port} ");
    table
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("->"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect()
}

/// Waits up to 10 s for `done`; panics with the targets, the kernel table
/// and the logs if it never holds.
fn wait(what: &str, director: &Netns, dir: &Path, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    panic!(
        "never: {what}\n{:#?}\n{}\n--- checkd.log\n{}\n--- ipvsd.log\n{}",
        targets(&socket_in(dir, "checkd")),
        kernel_table(director),
        log("checkd.log"),
        log("ipvsd.log")
    );
}

/// The cluster's reals as DR real servers, each serving HTTP on `:80`.
fn dr_reals(cluster: &NatCluster) -> Vec<HttpServer> {
    cluster
        .reals
        .iter()
        .map(|real| {
            hold_vip(&real.ns);
            HttpServer::start(&real.ns, "0.0.0.0:80".parse().unwrap(), None)
        })
        .collect()
}

/// Waits until checkd has four targets, every one up.
fn wait_all_up(director: &Netns, dir: &Path, check_socket: &Path) {
    wait("all four targets up", director, dir, || {
        let t = targets(check_socket);
        t.len() == 4 && t.values().all(|(health, ..)| health == "HEALTH_UP")
    });
}

/// A DR real server: the VIP on `lo`, hidden from ARP.
fn hold_vip(real: &Netns) {
    for key in ["all", "eth0"] {
        real.set_sysctl(&format!("net.ipv4.conf.{key}.arp_ignore"), "1")
            .unwrap();
        real.set_sysctl(&format!("net.ipv4.conf.{key}.arp_announce"), "2")
            .unwrap();
    }
    real.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])
        .unwrap();
}

/// The director's daemons: vipd holding the VIP (on eth0 while ACTIVE,
/// hidden on lo while STANDBY: the seed's dual role; `accept_local` on the
/// reals' side), ipvsd with `services`, checkd; vipd and ipvsd ACTIVE.
struct Director {
    _daemons: [Daemon; 3],
    vipd_socket: PathBuf,
    check_socket: PathBuf,
}

impl Director {
    fn start(director: &Netns, dir: &Path, services: &str) -> Self {
        // The cluster's own VIP goes: vipd places it.
        director
            .ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"])
            .unwrap();
        let vipd = format!(
            "addresses:\n  - address: {VIP}/32\n    interface: eth0\n\
             real_server:\n  mode: dr\n\
             accept_local: [eth1]\nstate_file: {}\n",
            dir.join("vipd.state").display()
        );
        let vipd = Daemon::start_configured(director, "vipd", dir, &vipd);
        let accept_local = || director.sysctl("net.ipv4.conf.eth1.accept_local").unwrap();
        assert_eq!(accept_local(), "0");
        let vipd_socket = socket_in(dir, "vipd");
        transition(&vipd_socket, rpb::State::Active, 1);
        assert_eq!(accept_local(), "1");
        let ipvsd = Daemon::start_configured(director, "ipvsd", dir, services);
        transition(&socket_in(dir, "ipvsd"), rpb::State::Active, 1);
        let checkd = format!(
            "ipvsd_socket: {}\nmaintenance_dir: {}\nreconnect_max: 500ms\n",
            socket_in(dir, "ipvsd").display(),
            dir.join("maintenance").display()
        );
        let checkd = Daemon::start_configured(director, "checkd", dir, &checkd);
        Self {
            _daemons: [vipd, ipvsd, checkd],
            vipd_socket,
            check_socket: socket_in(dir, "checkd"),
        }
    }
}

#[test]
fn a_real_that_blackholes_the_vip_fails_its_through_vip_check_only() {
    run_in_vm_with(
        "a_real_that_blackholes_the_vip_fails_its_through_vip_check_only",
        &["ipvsd", "checkd", "vipd"],
        VM_TIMEOUT,
        || {
            let cluster = NatCluster::new("ctv", REALS.len()).unwrap();
            let (director, client) = (&cluster.director.ns, &cluster.client.ns);
            let _servers = dr_reals(&cluster);

            let dir = tempfile::tempdir().unwrap();
            let d = Director::start(director, dir.path(), &services());
            let (vipd_socket, check_socket) = (d.vipd_socket.clone(), d.check_socket.clone());
            let (kept, lost) = (REALS[0], REALS[1]);

            // Every target up; the through-VIP ones with a mark each, and
            // one probe service per real in the kernel.
            wait_all_up(director, dir.path(), &check_socket);
            let t = targets(&check_socket);
            let marks: Vec<u32> = REALS.iter().map(|r| t[&format!("vip {r}")].2).collect();
            assert_eq!(marks, [0x7a00_0000, 0x7a00_0001], "{t:#?}");
            assert!(REALS.iter().all(|r| t[&format!("classic {r}")].2 == 0));
            let table = kernel_table(director);
            assert_eq!(table.matches("FWM  ").count(), 2, "{table}");
            assert_eq!(kernel_reals(director, 80).len(), 2, "{table}");

            // Client traffic through the VIP reaches both reals.
            let vip = format!("{VIP}:80").parse().unwrap();
            let answered: usize = http_spread(client, vip, 6).values().sum();
            assert_eq!(answered, 6);

            // The real loses the VIP: it still serves its own address, so
            // the classic check stays up, but the through-VIP probe times out.
            cluster.reals[1]
                .ns
                .ip(&["addr", "del", &format!("{VIP}/32"), "dev", "lo"])
                .unwrap();
            wait(&format!("{lost} out of :80"), director, dir.path(), || {
                kernel_reals(director, 80) == [format!("{kept}:80")]
            });
            let t = targets(&check_socket);
            let (health, reason, _) = &t[&format!("vip {lost}")];
            assert_eq!(health, "HEALTH_DOWN", "{t:#?}");
            assert!(reason.starts_with("timeout after 150ms"), "{t:#?}");
            assert_eq!(t[&format!("classic {lost}")].0, "HEALTH_UP", "{t:#?}");
            assert_eq!(t[&format!("classic {lost}")].1, "ok", "{t:#?}");
            assert_eq!(
                kernel_reals(director, 81).len(),
                2,
                "the classic check sees nothing"
            );
            assert_eq!(t[&format!("vip {kept}")].0, "HEALTH_UP", "{t:#?}");
            // No client request through the VIP is lost to the blackhole.
            let answered: usize = http_spread(client, vip, 6).values().sum();
            assert_eq!(answered, 6);

            // The VIP back on lo: the real returns after two good probes.
            hold_vip(&cluster.reals[1].ns);
            wait(&format!("{lost} back in :80"), director, dir.path(), || {
                kernel_reals(director, 80).len() == 2
            });

            // STANDBY (the peer serves): vipd hides the VIP on lo, where it
            // is still local, so the answers need accept_local as before; the
            // probe services stay, and the view stays current.
            transition(&socket_in(dir.path(), "ipvsd"), rpb::State::Standby, 2);
            transition(&vipd_socket, rpb::State::Standby, 2);
            let addrs = director.ip(&["-o", "addr", "show"]).unwrap();
            let addrs = String::from_utf8_lossy(&addrs.stdout);
            assert!(
                addrs.lines().any(|l| l.contains(" lo ") && l.contains(VIP))
                    && !addrs
                        .lines()
                        .any(|l| l.contains(" eth0 ") && l.contains(VIP)),
                "STANDBY: the VIP on lo only\n{addrs}"
            );
            assert_eq!(
                director.sysctl("net.ipv4.conf.eth1.accept_local").unwrap(),
                "1"
            );
            cluster.reals[1]
                .ns
                .ip(&["addr", "del", &format!("{VIP}/32"), "dev", "lo"])
                .unwrap();
            wait(
                &format!("{lost} out of :80 while STANDBY"),
                director,
                dir.path(),
                || kernel_reals(director, 80) == [format!("{kept}:80")],
            );
            let t = targets(&check_socket);
            assert_eq!(t[&format!("vip {kept}")].0, "HEALTH_UP", "{t:#?}");
            assert_eq!(t[&format!("vip {kept}")].1, "ok", "{t:#?}");
            assert_eq!(t[&format!("classic {lost}")].0, "HEALTH_UP", "{t:#?}");
        },
    );
}

/// The kernel's connection entries to the VIP: `(protocol, state, real)`.
fn kernel_connections(director: &Netns) -> Vec<(String, String, String)> {
    let out = director.command("ipvsadm").args(["-Lnc"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("{VIP}:")))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let [protocol, _, state, _, _, real] = fields[..] else {
                panic!("an ipvsadm -Lnc line of another shape: {l}");
            };
            (protocol.to_owned(), state.to_owned(), real.to_owned())
        })
        .collect()
}

/// Checks that probes left IPVS only entries a new probe will not follow:
/// none for UDP, and TCP ones in CLOSE or TIME_WAIT (a new SYN from the
/// same source port is scheduled afresh) but for one probe in flight per
/// HTTP target. Returns the entries.
fn assert_no_entry_to_follow(director: &Netns) -> Vec<(String, String, String)> {
    let entries = kernel_connections(director);
    assert!(
        entries.iter().all(|(protocol, ..)| protocol == "TCP"),
        "a UDP probe left a connection entry: {entries:?}"
    );
    let settled = |state: &str| state == "CLOSE" || state == "TIME_WAIT";
    let open = entries.iter().filter(|(_, s, _)| !settled(s)).count();
    assert!(open <= REALS.len(), "probes left open entries: {entries:?}");
    entries
}

#[test]
fn through_vip_probes_leave_no_connection_entry_a_later_probe_could_follow() {
    run_in_vm_with(
        "through_vip_probes_leave_no_connection_entry_a_later_probe_could_follow",
        &["ipvsd", "checkd", "vipd"],
        VM_TIMEOUT,
        || {
            let cluster = NatCluster::new("ctc", REALS.len()).unwrap();
            let director = &cluster.director.ns;
            let servers = dr_reals(&cluster);
            for real in &cluster.reals {
                // Bound to the VIP, so the answer comes from it.
                udp_echo(&real.ns, format!("{VIP}:7").parse().unwrap());
            }
            let dir = tempfile::tempdir().unwrap();
            let d = Director::start(director, dir.path(), &probe_services());
            let check_socket = d.check_socket.clone();
            wait_all_up(director, dir.path(), &check_socket);
            let table = kernel_table(director);
            assert_eq!(table.matches(" rr ops").count(), 4, "{table}");

            // Two seconds of probes: about 20 per target.
            std::thread::sleep(Duration::from_secs(2));
            let entries = assert_no_entry_to_follow(director);
            assert!(entries.len() >= 20, "{entries:?}");
            let t = targets(&check_socket);
            assert!(
                t.values().all(|(health, ..)| health == "HEALTH_UP"),
                "{t:#?}"
            );

            // A real that accepts and never answers: each probe gives up at
            // its timeout, and the reset it ends with settles the entry (a
            // FIN would leave it in FIN_WAIT, the server never closing).
            let hung = REALS[1];
            servers[1].set(HttpMode::Hang);
            wait(&format!("web {hung} down"), director, dir.path(), || {
                targets(&check_socket)[&format!("web {hung}")].0 == "HEALTH_DOWN"
            });
            std::thread::sleep(Duration::from_secs(1));
            let entries = assert_no_entry_to_follow(director);
            let reset = entries
                .iter()
                .filter(|(_, state, real)| state == "CLOSE" && *real == format!("{hung}:80"))
                .count();
            assert!(reset >= 5, "timed-out probes reset: {entries:?}");
            let t = targets(&check_socket);
            assert_eq!(t[&format!("web {}", REALS[0])].0, "HEALTH_UP", "{t:#?}");
        },
    );
}
