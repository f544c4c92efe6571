//! Benchmark: hbd failover at `keepalive: 20ms`, `deadtime: 100ms`, and
//! false failovers under 5% heartbeat loss, with keepalived's VRRP
//! (`advert_int 0.1`) as the peer on the same topology in the same run.
//!
//! Two clusters, each two director namespaces on its own bridge holding
//! VIP 198.51.100.10: tandem (hbd driving a real vipd; unicast link) and
//! keepalived (VRRPv3, unicast peers, `nopreempt`). Release binaries.
//!
//! 1. Failover, 20 trials, tandem and keepalived alternating: SIGKILL the
//!    active hbd (keepalived's whole process group), then time until the
//!    VIP appears on the other director, seen by `ip monitor address` in
//!    its namespace — the same measure for both. For tandem also the
//!    standby's own figures: peer declared dead and group ACTIVE (its
//!    TAKEOVER event). The killed node is restarted as the new standby
//!    (keepalived's VIP, left behind by SIGKILL, is removed first: vipd
//!    removes tandem's when hbd restarts).
//! 2. False failovers: both clusters at once for `TANDEM_BENCH_LOSS_SECS`
//!    (default 300) with nftables dropping 5% of heartbeats (`numgen
//!    random`) entering each director; every peer-dead, role change and
//!    late heartbeat is counted (hbd's events; keepalived's log).
//!
//! Run as root: `cargo build --release --bins && cargo bench -p
//! tandem-integration-tests --bench hbd_failover`. Installs keepalived when
//! missing. Prints figures and ratios; asserts only that the run worked.

#![allow(
    clippy::unwrap_used,
    reason = "benchmark: a panic is the failure report"
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tandem_integration_tests::bench::summary;
use tandem_integration_tests::hb_client::{self, EventLog};
use tandem_integration_tests::netns::{Host, Lan, Netns};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_proto::hb::v1 as hb;
use tokio::time::Instant;

const TRIALS: usize = 20;
const VIP: &str = "198.51.100.10";
const PORT: u16 = 6940;
const ADDRESSES: [&str; 2] = ["198.51.100.11", "198.51.100.12"];
const NAMES: [&str; 2] = ["a", "b"];
const LOSS_PERCENT: u32 = 5;

/// `ip monitor address` in a namespace: when the VIP was added there.
struct VipWatch {
    child: Child,
    added: mpsc::Receiver<Instant>,
}

impl VipWatch {
    fn start(ns: &Netns) -> Self {
        let mut child = ns
            .command("ip")
            .args(["-4", "monitor", "address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, added) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(&format!("{VIP}/")) && !line.starts_with("Deleted") {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        // `ip monitor` prints nothing when it is ready; give it time to
        // subscribe before anything happens.
        std::thread::sleep(Duration::from_millis(100));
        Self { child, added }
    }

    fn wait(&self, limit: Duration) -> Option<Instant> {
        self.added.recv_timeout(limit).ok()
    }
}

impl Drop for VipWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_vip(ns: &Netns) -> bool {
    let out = ns.ip(&["-4", "addr", "show", "dev", "eth0"]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/24"))
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: not within {limit:?}");
}

/// Loss on the heartbeats entering `ns`, with counters to read back.
fn drop_heartbeats(ns: &Netns, matching: &str) {
    ns.nft(&format!(
        "table inet tdm_loss {{\n\
         chain in {{ type filter hook input priority 0; policy accept;\n\
         {matching} counter;\n\
         {matching} numgen random mod 100 < {LOSS_PERCENT} counter drop; }}\n\
         }}\n"
    ))
    .unwrap();
}

/// (seen, dropped) by [`drop_heartbeats`]' counters.
fn loss_counters(ns: &Netns) -> (u64, u64) {
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "tdm_loss"])
        .output()
        .unwrap();
    let packets: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "packets")
        .map(|w| w[1].parse().unwrap())
        .collect();
    (packets[0], packets[1])
}

// --- tandem -------------------------------------------------------------

struct TandemNode {
    name: &'static str,
    peer: &'static str,
    host: Host,
    dir: tempfile::TempDir,
    _vipd: Daemon,
    hbd: Option<Daemon>,
}

impl TandemNode {
    fn start(lan: &Lan, i: usize) -> Self {
        let host = lan.host(NAMES[i], &format!("{}/24", ADDRESSES[i])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let vipd = format!(
            "state_file: {}\naddresses:\n  - address: {VIP}/24\n    interface: eth0\nannounce:\n  count: 1\n",
            dir.path().join("vipd.state").display()
        );
        let vipd = Daemon::start_configured(&host.ns, "vipd", dir.path(), &vipd);
        let mut node = Self {
            name: NAMES[i],
            peer: ADDRESSES[1 - i],
            host,
            dir,
            _vipd: vipd,
            hbd: None,
        };
        node.start_hbd();
        node
    }

    fn start_hbd(&mut self) {
        let keys = self.dir.path().join("hbd.keys");
        std::fs::write(&keys, "auth 1\n1 sha256 benchmark-secret-0123456789\n").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = format!(
            "cluster: bench\nnode: {name}\nnodes:\n  - name: a\n    priority: 100\n  - name: b\n    priority: 90\n\
             key_file: {keys}\n\
             timers:\n  keepalive: 20ms\n  warntime: 60ms\n  deadtime: 100ms\n  initdead: 1s\n\
             links:\n  udp_port: {PORT}\n  ucast:\n    - interface: eth0\n      peer: {peer}\n\
             resources:\n  - name: vipd\n    socket: {vipd}\n    timeout: 2s\n",
            name = self.name,
            peer = self.peer,
            keys = keys.display(),
            vipd = socket_in(self.dir.path(), "vipd").display(),
        );
        self.hbd = Some(Daemon::start_configured(
            &self.host.ns,
            "hbd",
            self.dir.path(),
            &config,
        ));
    }

    fn socket(&self) -> PathBuf {
        socket_in(self.dir.path(), "hbd")
    }

    /// This node's role and whether it sees its peer alive and ACTIVE.
    fn view(&self) -> (i32, bool) {
        let cluster = hb_client::cluster(&self.socket());
        let me = cluster.nodes.iter().find(|n| n.local).unwrap().role;
        let peer_active = cluster
            .nodes
            .iter()
            .any(|n| !n.local && n.alive && n.role == hb::Role::Active as i32);
        (me, peer_active)
    }

    fn is_active(&self) -> bool {
        self.hbd.is_some() && self.view().0 == hb::Role::Active as i32 && has_vip(&self.host.ns)
    }

    fn is_settled_standby(&self) -> bool {
        self.view() == (hb::Role::Standby as i32, true) && !has_vip(&self.host.ns)
    }

    fn kill(&mut self) {
        let hbd = self.hbd.take().unwrap();
        hbd.signal(rustix::process::Signal::KILL);
    }
}

/// One tandem failover: the figures seen from outside and by the standby.
struct TandemTrial {
    vip: Duration,
    declared_dead: Duration,
    group_active: Duration,
}

fn tandem_trial(nodes: &mut [TandemNode; 2]) -> TandemTrial {
    let active = usize::from(!nodes[0].is_active());
    let standby = 1 - active;
    let events = EventLog::start(&nodes[standby].socket());
    let watch = VipWatch::start(&nodes[standby].host.ns);
    let (killed_ms, killed) = (hb_client::unix_ms(), Instant::now());
    nodes[active].kill();
    let vip = watch
        .wait(Duration::from_secs(5))
        .expect("tandem: the VIP on the standby within 5 s")
        - killed;
    let dead = events.wait(hb::EventKind::PeerDead, Duration::from_secs(5));
    let takeover = events.wait(hb::EventKind::Takeover, Duration::from_secs(5));
    // The killed node comes back as the standby (auto_failback is off).
    nodes[active].start_hbd();
    wait_until(
        "the restarted hbd settles as STANDBY",
        Duration::from_secs(10),
        || nodes[active].is_settled_standby() && nodes[standby].is_active(),
    );
    // Past its initdead, so the next trial starts from a steady pair.
    std::thread::sleep(Duration::from_millis(1200));
    TandemTrial {
        vip,
        declared_dead: Duration::from_millis(dead.unix_ms.saturating_sub(killed_ms)),
        group_active: Duration::from_millis(takeover.unix_ms.saturating_sub(killed_ms)),
    }
}

// --- keepalived ---------------------------------------------------------

struct KeepalivedNode {
    name: &'static str,
    host: Host,
    dir: tempfile::TempDir,
    priority: u8,
    peer: &'static str,
    address: &'static str,
    child: Option<Child>,
}

impl KeepalivedNode {
    fn start(lan: &Lan, i: usize) -> Self {
        let mut node = Self {
            name: NAMES[i],
            host: lan.host(NAMES[i], &format!("{}/24", ADDRESSES[i])).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            priority: if i == 0 { 100 } else { 90 },
            peer: ADDRESSES[1 - i],
            address: ADDRESSES[i],
            child: None,
        };
        node.run();
        node
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("keepalived.log")
    }

    fn run(&mut self) {
        let conf = self.dir.path().join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id {name}\n  vrrp_version 3\n}}\n\
                 vrrp_instance bench {{\n  state BACKUP\n  nopreempt\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 0.1\n\
                   unicast_src_ip {address}\n  unicast_peer {{\n    {peer}\n  }}\n\
                   virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\n",
                name = self.name,
                priority = self.priority,
                address = self.address,
                peer = self.peer,
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let path = |f: &str| self.dir.path().join(f).to_string_lossy().into_owned();
        // After SIGKILL the pid files remain, and keepalived would refuse
        // to start ("daemon is already running").
        for file in ["k.pid", "v.pid"] {
            let _ = std::fs::remove_file(path(file));
        }
        let child = self
            .host
            .ns
            .command("keepalived")
            .args(["-n", "-l", "-G", "-P", "-f"])
            .arg(&conf)
            .args(["-p", &path("k.pid"), "-r", &path("v.pid")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL to keepalived's whole process group (parent and VRRP child).
    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        let group = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
        let _ = child.wait();
    }

    fn transitions(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        (
            log.matches("Entering MASTER STATE").count(),
            log.matches("Entering BACKUP STATE").count(),
        )
    }
}

impl Drop for KeepalivedNode {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

fn logs(nodes: &[KeepalivedNode; 2]) -> String {
    let read = |n: &KeepalivedNode| std::fs::read_to_string(n.log()).unwrap_or_default();
    format!("--- a\n{}\n--- b\n{}", read(&nodes[0]), read(&nodes[1]))
}

fn keepalived_trial(nodes: &mut [KeepalivedNode; 2]) -> Duration {
    let master = usize::from(!has_vip(&nodes[0].host.ns));
    let backup = 1 - master;
    let watch = VipWatch::start(&nodes[backup].host.ns);
    let killed = Instant::now();
    nodes[master].kill();
    let vip = watch.wait(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "keepalived: no VIP on the backup within 5 s\n{}",
            logs(nodes)
        )
    }) - killed;
    // SIGKILL leaves the VIP behind, as a power loss would not: remove it
    // so the restarted node comes back clean, as vipd's does.
    let _ = nodes[master]
        .host
        .ns
        .ip(&["addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
    nodes[master].run();
    std::thread::sleep(Duration::from_millis(1200));
    let running = nodes[master]
        .child
        .as_mut()
        .is_some_and(|c| c.try_wait().unwrap().is_none());
    assert!(
        running && !has_vip(&nodes[master].host.ns) && has_vip(&nodes[backup].host.ns),
        "keepalived did not settle\n{}",
        logs(nodes)
    );
    vip
}

// --- report -------------------------------------------------------------

fn count(events: &[hb::Event], kind: hb::EventKind) -> usize {
    events.iter().filter(|e| e.kind == kind as i32).count()
}

fn main() {
    tandem_integration_tests::require_root();
    assert!(
        tandem_integration_tests::bench::peer_available("keepalived", "keepalived"),
        "keepalived is needed as the peer"
    );
    let loss_secs: u64 = std::env::var("TANDEM_BENCH_LOSS_SECS")
        .ok()
        .map_or(300, |s| s.parse().expect("TANDEM_BENCH_LOSS_SECS: seconds"));

    let tandem_lan = Lan::new("hbbt").unwrap();
    let keepalived_lan = Lan::new("hbbk").unwrap();
    let mut tandem = [
        TandemNode::start(&tandem_lan, 0),
        TandemNode::start(&tandem_lan, 1),
    ];
    let mut keepalived = [
        KeepalivedNode::start(&keepalived_lan, 0),
        KeepalivedNode::start(&keepalived_lan, 1),
    ];
    wait_until(
        "tandem: a ACTIVE, b STANDBY",
        Duration::from_secs(10),
        || tandem[0].is_active() && tandem[1].is_settled_standby(),
    );
    wait_until("keepalived: a MASTER", Duration::from_secs(10), || {
        has_vip(&keepalived[0].host.ns) && !has_vip(&keepalived[1].host.ns)
    });

    println!("\n1. failover after SIGKILL of the active node, {TRIALS} trials, alternating");
    let (mut vip, mut dead, mut active, mut peer) = (vec![], vec![], vec![], vec![]);
    for _ in 0..TRIALS {
        let trial = tandem_trial(&mut tandem);
        vip.push(trial.vip);
        dead.push(trial.declared_dead);
        active.push(trial.group_active);
        peer.push(keepalived_trial(&mut keepalived));
    }
    summary("tandem: peer declared dead (hbd's event)", dead);
    summary("tandem: group ACTIVE (hbd's TAKEOVER event)", active);
    let ours = summary("tandem: VIP on the standby (ip monitor)", vip);
    let theirs = summary("keepalived advert_int 0.1: VIP on the backup", peer);
    println!(
        "ratio, kill → VIP on the other director, keepalived/tandem: {:.1}x",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );

    println!(
        "\n2. {loss_secs} s with {LOSS_PERCENT}% of heartbeats dropped entering each director (both clusters at once)"
    );
    let logs: Vec<EventLog> = tandem
        .iter()
        .map(|n| EventLog::start(&n.socket()))
        .collect();
    let before: Vec<(usize, usize)> = keepalived.iter().map(KeepalivedNode::transitions).collect();
    for node in &tandem {
        drop_heartbeats(&node.host.ns, &format!("udp dport {PORT}"));
    }
    for node in &keepalived {
        drop_heartbeats(&node.host.ns, "meta l4proto 112");
    }
    std::thread::sleep(Duration::from_secs(loss_secs));
    let counters = |ns: Vec<&Netns>| {
        ns.into_iter()
            .map(loss_counters)
            .fold((0, 0), |(s, d), (s2, d2)| (s + s2, d + d2))
    };
    let (seen, dropped) = counters(tandem.iter().map(|n| &n.host.ns).collect());
    let (k_seen, k_dropped) = counters(keepalived.iter().map(|n| &n.host.ns).collect());
    let events: Vec<hb::Event> = logs.iter().flat_map(EventLog::all).collect();
    let (dead, roles, late) = (
        count(&events, hb::EventKind::PeerDead),
        count(&events, hb::EventKind::RoleChanged),
        count(&events, hb::EventKind::PeerLate),
    );
    println!(
        "tandem: heartbeats {seen}, dropped {dropped} ({:.2}%); peer declared dead {dead}, role changes {roles} (false failovers), late heartbeats {late}",
        100.0 * dropped as f64 / seen.max(1) as f64
    );
    let after: Vec<(usize, usize)> = keepalived.iter().map(KeepalivedNode::transitions).collect();
    let changes: usize = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0) + (a.1 - b.1))
        .sum();
    println!(
        "keepalived: adverts {k_seen}, dropped {k_dropped} ({:.2}%); state changes {changes} (false failovers)",
        100.0 * k_dropped as f64 / k_seen.max(1) as f64
    );
    assert!(
        seen > 0 && k_seen > 0,
        "no heartbeats counted: the loss rules did not match"
    );
}
