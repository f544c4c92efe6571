//! Tier 2: hbd between namespaces on a bridge, over real UDP and a real
//! serial line (two ptys), each director driving its own real vipd. The
//! active director is killed with SIGKILL and the standby takes the group;
//! forged and replayed heartbeats are dropped; a partition and its heal end
//! with exactly one ACTIVE node; the nodes hear each other over serial
//! alone, through line noise; a group that fails at step 2 of 3 is rolled
//! back and given up.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_hbd::keys::Keys;
use tandem_integration_tests::block_on;
use tandem_integration_tests::hb_client::{self, EventLog};
use tandem_integration_tests::netns::{Host, Lan, Netns};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_integration_tests::serial_line::SerialLine;
use tandem_proto::hb::v1 as hb;
use tandem_proto::resource::v1 as rpb;
use tandem_proto::resource::v1::resource_client::ResourceClient;
use tandem_proto::vip::v1 as vpb;

const VIP: &str = "198.51.100.10";
const PORT: u16 = 6940;
const KEY: &str = "auth 1\n1 sha256 netns-test-secret-0123456789\n";
const KEEPALIVE_MS: u64 = 50;
const DEADTIME_MS: u64 = 250;

/// A director namespace: hbd driving a vipd that holds the VIP.
struct Director {
    name: &'static str,
    host: Host,
    dir: tempfile::TempDir,
    hbd: Option<Daemon>,
    vipd: Option<Daemon>,
}

impl Director {
    fn new(lan: &Lan, name: &'static str, cidr: &str) -> Self {
        Self {
            name,
            host: lan.host(name, cidr).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            hbd: None,
            vipd: None,
        }
    }

    fn ns(&self) -> &Netns {
        &self.host.ns
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_vipd(&mut self) {
        let config = format!(
            "state_file: {}\nverify_interval: 100ms\naddresses:\n  - address: {VIP}/24\n    interface: eth0\nannounce:\n  count: 1\n",
            self.path("vipd.state").display()
        );
        self.vipd = Some(Daemon::start_configured(
            self.ns(),
            "vipd",
            self.dir.path(),
            &config,
        ));
    }

    /// Starts hbd; `links` and `extra` are YAML for those keys.
    fn start_hbd(&mut self, links: &str, extra: &str) {
        let keys = self.path("hbd.keys");
        std::fs::write(&keys, KEY).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = format!(
            "cluster: netns\nnode: {name}\nnodes:\n  - name: a\n    priority: 100\n  - name: b\n    priority: 90\n\
             key_file: {keys}\n\
             timers:\n  keepalive: {KEEPALIVE_MS}ms\n  warntime: 150ms\n  deadtime: {DEADTIME_MS}ms\n  initdead: 1s\n\
             links:\n  udp_port: {PORT}\n{links}\
             resources:\n  - name: vipd\n    socket: {vipd}\n    timeout: 2s\n{extra}",
            name = self.name,
            keys = keys.display(),
            vipd = socket_in(self.dir.path(), "vipd").display(),
        );
        self.hbd = Some(Daemon::start_configured(
            self.ns(),
            "hbd",
            self.dir.path(),
            &config,
        ));
    }

    fn hbd_socket(&self) -> PathBuf {
        socket_in(self.dir.path(), "hbd")
    }

    fn cluster(&self) -> hb::Cluster {
        hb_client::cluster(&self.hbd_socket())
    }

    fn role_of(&self, node: &str) -> i32 {
        let cluster = self.cluster();
        cluster
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map_or(0, |n| n.role)
    }

    fn is_active(&self) -> bool {
        let cluster = self.cluster();
        let me = cluster.nodes.iter().find(|n| n.local).unwrap();
        me.role == hb::Role::Active as i32 && cluster.resources.iter().all(|r| r.state == "ACTIVE")
    }

    fn is_standby(&self) -> bool {
        self.role_of(self.name) == hb::Role::Standby as i32
    }

    fn has_vip(&self) -> bool {
        let out = self
            .ns()
            .ip(&["-4", "addr", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/24"))
    }

    fn announcements(&self) -> u64 {
        let socket = socket_in(self.dir.path(), "vipd");
        block_on(async move {
            let channel = tandem_daemon::client::connect_unix(&socket).await.unwrap();
            vpb::vip_client::VipClient::new(channel)
                .list_addresses(vpb::ListAddressesRequest {})
                .await
                .unwrap()
                .into_inner()
                .addresses
                .iter()
                .map(|a| a.announcements)
                .sum()
        })
    }

    fn kill_hbd(&mut self) -> u64 {
        let hbd = self.hbd.take().unwrap();
        let at = hb_client::unix_ms();
        hbd.signal(rustix::process::Signal::KILL);
        drop(hbd);
        at
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.path(f)).unwrap_or_default();
        format!(
            "--- {} hbd.log\n{}\n--- {} vipd.log\n{}",
            self.name,
            read("hbd.log"),
            self.name,
            read("vipd.log")
        )
    }

    /// Waits up to `limit` for `cond`; panics with both logs otherwise.
    fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&Self) -> bool) {
        let start = tokio::time::Instant::now();
        while start.elapsed() < limit {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{}: {what} not within {limit:?}\n{}",
            self.name,
            self.logs()
        );
    }

    fn metrics_text(&self, port: u16) -> String {
        self.ns()
            .enter(|| {
                use std::io::{Read, Write};
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut text = String::new();
                stream.read_to_string(&mut text).unwrap();
                text
            })
            .unwrap()
    }
}

fn ucast(peer: &str) -> String {
    format!("  ucast:\n    - interface: eth0\n      peer: {peer}\n")
}

fn both_links(peer: &str) -> String {
    format!("{}  bcast:\n    - interface: eth0\n", ucast(peer))
}

/// Two directors, `a` ACTIVE with the VIP, `b` STANDBY without it.
fn pair(lan: &Lan, links: fn(&str) -> String, extra: &str) -> (Director, Director) {
    let mut a = Director::new(lan, "a", "198.51.100.11/24");
    let mut b = Director::new(lan, "b", "198.51.100.12/24");
    a.start_vipd();
    b.start_vipd();
    a.start_hbd(&links("198.51.100.12"), extra);
    b.start_hbd(&links("198.51.100.11"), extra);
    a.wait("ACTIVE", Duration::from_secs(10), Director::is_active);
    b.wait("STANDBY, seeing a ACTIVE", Duration::from_secs(5), |b| {
        b.is_standby() && b.role_of("a") == hb::Role::Active as i32
    });
    assert!(a.has_vip(), "{}", a.logs());
    assert!(!b.has_vip(), "{}", b.logs());
    (a, b)
}

#[test]
fn kill_9_of_the_active_hands_the_group_to_the_standby_within_deadtime_and_a_keepalive() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbk").unwrap();
    let (mut a, b) = pair(&lan, both_links, "");
    let events = EventLog::start(&b.hbd_socket());
    let killed = a.kill_hbd();
    let dead = events.wait(hb::EventKind::PeerDead, Duration::from_secs(5));
    let role = events.wait(hb::EventKind::RoleChanged, Duration::from_secs(5));
    let takeover = events.wait(hb::EventKind::Takeover, Duration::from_secs(5));
    let detect = dead.unix_ms.saturating_sub(killed);
    let decide = role.unix_ms.saturating_sub(killed);
    let active = takeover.unix_ms.saturating_sub(killed);
    println!(
        "kill → declared dead {detect} ms, → decision {decide} ms, → group ACTIVE {active} ms; timeline: {}",
        takeover.detail
    );
    // The peer is declared dead at the first tick past deadtime after its
    // last heartbeat; 100 ms of slack for a loaded CI machine.
    let bound = DEADTIME_MS + KEEPALIVE_MS + 100;
    assert!(
        decide <= bound,
        "decision {decide} ms after the kill, bound {bound} ms"
    );
    assert!(role.role == hb::Role::Active as i32, "{role:?}");
    assert!(
        takeover.detail.contains("vipd ACTIVE"),
        "{}",
        takeover.detail
    );
    assert!(b.is_active(), "{}", b.logs());
    assert!(b.has_vip(), "{}", b.logs());
    // The epoch grew.
    assert!(role.epoch >= 2, "{role:?}");
}

#[test]
fn forged_and_replayed_heartbeats_are_dropped_and_counted() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbr").unwrap();
    let metrics_port = 9411;
    let mut a = Director::new(&lan, "a", "198.51.100.11/24");
    let b = Director::new(&lan, "b", "198.51.100.12/24");
    a.start_vipd();
    a.start_hbd(
        &ucast("198.51.100.12"),
        &format!("daemon:\n  metrics_listen: 127.0.0.1:{metrics_port}\n"),
    );
    a.wait(
        "ACTIVE alone after initdead",
        Duration::from_secs(10),
        Director::is_active,
    );
    let events = EventLog::start(&a.hbd_socket());

    // From b's address: a heartbeat claiming to be b, ACTIVE with a huge
    // epoch, signed with the wrong key.
    let beat = |role: hb::Role, term| hb::Heartbeat {
        cluster: "netns".into(),
        node: "b".into(),
        incarnation: 1,
        seq: 1,
        epoch: 1000,
        role: role.into(),
        priority: 90,
        eligible: true,
        term,
        ..hb::Heartbeat::default()
    };
    let wrong = Keys::parse("auth 1\n1 sha256 not-the-cluster-secret-000\n").unwrap();
    let right = Keys::parse(KEY).unwrap();
    let forged = tandem_hbd::wire::seal(&wrong, &beat(hb::Role::Active, 1000));
    let genuine = tandem_hbd::wire::seal(&right, &beat(hb::Role::Standby, 0));
    let send = |bytes: Vec<u8>| {
        b.ns()
            .enter(move || {
                let socket = UdpSocket::bind(("198.51.100.12", PORT)).unwrap();
                socket
                    .send_to(
                        &bytes,
                        SocketAddr::from((Ipv4Addr::new(198, 51, 100, 11), PORT)),
                    )
                    .unwrap();
            })
            .unwrap();
    };
    for _ in 0..3 {
        send(forged.clone());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        events.find(hb::EventKind::PeerUp).is_none(),
        "a forged heartbeat was acted on: {:?}",
        events.all()
    );
    assert!(a.is_active());
    let text = a.metrics_text(metrics_port);
    assert!(
        text.contains("tandem_hbd_heartbeats_rejected_total{reason=\"bad_tag\"} 3"),
        "{text}"
    );

    // A genuine one is heard once (b shows up, then dies again); the same
    // packet captured and sent again is a replay.
    send(genuine.clone());
    events.wait(hb::EventKind::PeerUp, Duration::from_secs(2));
    events.wait(hb::EventKind::PeerDead, Duration::from_secs(2));
    let ups = || {
        events
            .all()
            .iter()
            .filter(|e| e.kind == hb::EventKind::PeerUp as i32)
            .count()
    };
    assert_eq!(ups(), 1);
    send(genuine.clone());
    send(genuine);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ups(),
        1,
        "a replayed heartbeat was acted on: {:?}",
        events.all()
    );
    let text = a.metrics_text(metrics_port);
    assert!(
        text.contains("tandem_hbd_heartbeats_rejected_total{reason=\"replayed\"} 2"),
        "{text}"
    );
}

/// Drops UDP to and from the heartbeat port in `ns` (a partition).
fn block_udp(ns: &Netns) {
    ns.nft(&format!(
            "table inet tdm_partition {{\n\
             chain in {{ type filter hook input priority 0; policy accept; udp dport {PORT} drop; }}\n\
             chain out {{ type filter hook output priority 0; policy accept; udp dport {PORT} drop; }}\n\
             }}\n"
    ))
    .unwrap();
}

fn unblock_udp(ns: &Netns) {
    ns.nft_delete_table("tdm_partition").unwrap();
}

#[test]
fn a_partition_and_its_heal_end_with_exactly_one_active() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbp").unwrap();
    let (a, b) = pair(&lan, both_links, "");
    block_udp(b.ns());
    // Each side now believes it is alone: both hold the group.
    b.wait(
        "ACTIVE during the partition",
        Duration::from_secs(5),
        Director::is_active,
    );
    assert!(a.is_active());
    let before = b.announcements();
    let events = EventLog::start(&b.hbd_socket());
    unblock_udp(b.ns());
    // b took the group under a higher term, so b keeps it and a steps down.
    a.wait(
        "STANDBY after the heal",
        Duration::from_secs(5),
        Director::is_standby,
    );
    let split = events.wait(hb::EventKind::SplitBrain, Duration::from_secs(2));
    assert_eq!(split.node, "a", "{split:?}");
    std::thread::sleep(Duration::from_millis(3 * KEEPALIVE_MS));
    for (seen_by, cluster) in [("a", a.cluster()), ("b", b.cluster())] {
        let active: Vec<&str> = cluster
            .nodes
            .iter()
            .filter(|n| n.role == hb::Role::Active as i32)
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(active, ["b"], "as seen by {seen_by}: {cluster:?}");
        assert_eq!(cluster.owner, "b");
    }
    assert!(b.has_vip() && !a.has_vip(), "{}\n{}", a.logs(), b.logs());
    // The winner re-announced the VIP at once after the heal.
    b.wait("re-announced", Duration::from_secs(2), |b| {
        b.announcements() > before
    });
}

#[test]
fn the_nodes_hear_each_other_over_serial_alone_through_line_noise() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbs").unwrap();
    let line = SerialLine::new().unwrap();
    let serial = |device: &Path| {
        format!(
            "  serial:\n    - device: {}\n      baud: 115200\n",
            device.display()
        )
    };
    let mut a = Director::new(&lan, "a", "198.51.100.11/24");
    let mut b = Director::new(&lan, "b", "198.51.100.12/24");
    block_udp(a.ns());
    block_udp(b.ns());
    a.start_vipd();
    b.start_vipd();
    a.start_hbd(
        &format!("{}{}", ucast("198.51.100.12"), serial(&line.a)),
        "",
    );
    b.start_hbd(
        &format!("{}{}", ucast("198.51.100.11"), serial(&line.b)),
        "",
    );
    a.wait("ACTIVE", Duration::from_secs(10), Director::is_active);
    b.wait("STANDBY, hearing a", Duration::from_secs(5), |b| {
        b.is_standby() && b.cluster().nodes.iter().any(|n| n.name == "a" && n.alive)
    });
    let events = EventLog::start(&b.hbd_socket());
    // Noise on the line, some of it looking like a frame start.
    let mut noise: Vec<u8> = (0..=255u8).collect();
    noise.extend([0xA5, 0x5A, 0x00, 0x40, 0x13, 0x37]);
    for _ in 0..10 {
        line.noise(&noise);
        std::thread::sleep(Duration::from_millis(40));
    }
    std::thread::sleep(Duration::from_millis(2 * DEADTIME_MS));
    let cluster = b.cluster();
    let peer = cluster.nodes.iter().find(|n| n.name == "a").unwrap();
    assert!(peer.alive, "{cluster:?}");
    assert_eq!(
        peer.links,
        [format!("serial {}", line.b.display())],
        "heard over serial only"
    );
    assert!(
        events.find(hb::EventKind::PeerDead).is_none(),
        "the noise made b lose a: {:?}",
        events.all()
    );
    assert!(a.is_active() && b.is_standby());
}

#[test]
fn a_group_failing_at_step_2_of_3_is_rolled_back_and_given_up() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbg").unwrap();
    let mut a = Director::new(&lan, "a", "198.51.100.11/24");
    a.start_vipd();
    // Step 2: ipvsd, which cannot go ACTIVE on this kernel (no IPVS).
    // Step 3: a second vipd with its own VIP, which must never be touched.
    let ipvsd = Daemon::start_configured(a.ns(), "ipvsd", a.dir.path(), "{}\n");
    let third_dir = tempfile::tempdir().unwrap();
    let third_config = format!(
        "state_file: {}\naddresses:\n  - address: 198.51.100.20/24\n    interface: eth0\n",
        third_dir.path().join("vipd.state").display()
    );
    let third = Daemon::start_configured(a.ns(), "vipd", third_dir.path(), &third_config);
    let extra = format!(
        "  - name: ipvsd\n    socket: {}\n    timeout: 2s\n  - name: vipd-2\n    socket: {}\n    timeout: 2s\nfailure_hold: 30s\n",
        socket_in(a.dir.path(), "ipvsd").display(),
        socket_in(third_dir.path(), "vipd").display()
    );
    a.start_hbd(&ucast("198.51.100.12"), &extra);
    let events = EventLog::start(&a.hbd_socket());
    let failed = events.wait(hb::EventKind::GroupFailed, Duration::from_secs(10));
    assert!(
        failed.detail.contains("step 2 of 3") && failed.detail.contains("ipvsd"),
        "{failed:?}"
    );
    let cluster = a.cluster();
    let me = cluster.nodes.iter().find(|n| n.local).unwrap();
    assert_eq!(me.role, hb::Role::Standby as i32, "{cluster:?}");
    assert!(me.failed && !me.eligible, "{me:?}");
    let states: Vec<(&str, &str)> = cluster
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("vipd", "STANDBY"),
            ("ipvsd", "STOPPED"),
            ("vipd-2", "STANDBY")
        ],
        "{}",
        a.logs()
    );
    // Step 1 was really undone; step 3 never ran.
    assert!(!a.has_vip(), "{}", a.logs());
    let out = a.ns().ip(&["-4", "addr", "show", "dev", "eth0"]).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("198.51.100.20"));
    // vipd went STOPPED → STANDBY → ACTIVE → STANDBY: three changes.
    let socket = socket_in(a.dir.path(), "vipd");
    let status = block_on(async move {
        let channel = tandem_daemon::client::connect_unix(&socket).await.unwrap();
        ResourceClient::new(channel)
            .get_status(rpb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(status.transitions, 3, "{status:?}");
    drop((ipvsd, third));
}

#[test]
fn a_failing_fence_blocks_the_takeover_until_it_succeeds_and_notify_hears_every_role() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbf").unwrap();
    let scripts = tempfile::tempdir().unwrap();
    let outcome = scripts.path().join("fence-exit");
    let fenced = scripts.path().join("fenced");
    let roles = scripts.path().join("roles");
    std::fs::write(&outcome, "1").unwrap();
    let fence = scripts.path().join("fence");
    std::fs::write(
        &fence,
        format!(
            "#!/bin/sh\necho \"$TANDEM_PEER $TANDEM_EPOCH\" >> {}\nexit $(cat {})\n",
            fenced.display(),
            outcome.display()
        ),
    )
    .unwrap();
    let notify = scripts.path().join("notify");
    std::fs::write(
        &notify,
        format!(
            "#!/bin/sh\necho \"$TANDEM_NODE $TANDEM_ROLE $TANDEM_EPOCH\" >> {}\n",
            roles.display()
        ),
    )
    .unwrap();
    for script in [&fence, &notify] {
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let extra = format!(
        "fence:\n  command: [{}]\n  timeout: 2s\nnotify:\n  command: [{}]\nfailure_hold: 1s\n",
        fence.display(),
        notify.display()
    );
    let (mut a, b) = pair(&lan, both_links, &extra);
    let events = EventLog::start(&b.hbd_socket());
    a.kill_hbd();
    let fence_event = events.wait(hb::EventKind::Fence, Duration::from_secs(5));
    assert!(fence_event.detail.contains("failed"), "{fence_event:?}");
    events.wait(hb::EventKind::GroupFailed, Duration::from_secs(2));
    assert!(
        b.is_standby(),
        "took over although the fence failed\n{}",
        b.logs()
    );
    assert!(!b.has_vip());
    // The fence device answers now: after failure_hold b fences a and
    // takes over.
    std::fs::write(&outcome, "0").unwrap();
    b.wait(
        "ACTIVE once fenced",
        Duration::from_secs(5),
        Director::is_active,
    );
    let calls = std::fs::read_to_string(&fenced).unwrap();
    assert!(calls.lines().count() >= 2, "{calls}");
    assert!(calls.lines().all(|l| l.starts_with("a ")), "{calls}");
    let notified = std::fs::read_to_string(&roles).unwrap();
    assert!(
        notified.lines().any(|l| l.starts_with("b ACTIVE")),
        "{notified}"
    );
}

#[test]
fn a_director_that_loses_its_ping_target_hands_the_group_to_the_peer_that_still_reaches_it() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("hbi").unwrap();
    let _router = lan.host("router", "198.51.100.1/24").unwrap();
    let ping = "ping:\n  targets: [198.51.100.1]\n  interval: 100ms\n  timeout: 80ms\n  deadping: 300ms\n\
                daemon:\n  metrics_listen: 127.0.0.1:9101\n";
    let (a, b) = pair(&lan, ucast, ping);
    let both_reach = |d: &Director| {
        let cluster = d.cluster();
        cluster.nodes.iter().all(|n| n.score == 1)
            && cluster.ping.iter().all(|t| t.up)
            && cluster.ping.len() == 1
    };
    a.wait("both nodes scoring 1", Duration::from_secs(5), both_reach);
    let events = EventLog::start(&a.hbd_socket());
    // a's echo requests to the router are dropped on the way out: a loses
    // its upstream, b does not.
    a.ns()
        .nft(
            "table inet tdm_ping {\n\
             chain out { type filter hook output priority 0; policy accept; ip daddr 198.51.100.1 icmp type echo-request drop; }\n\
             }\n",
        )
        .unwrap();
    let lost = events.wait(hb::EventKind::ScoreChanged, Duration::from_secs(3));
    assert_eq!(lost.detail, "score 0: 198.51.100.1 down", "{lost:?}");
    b.wait(
        "ACTIVE with the better score",
        Duration::from_secs(3),
        Director::is_active,
    );
    a.wait(
        "STANDBY with score 0",
        Duration::from_secs(3),
        Director::is_standby,
    );
    assert!(b.has_vip() && !a.has_vip(), "{}\n{}", a.logs(), b.logs());
    let seen_by_b = b.cluster();
    let a_seen = seen_by_b.nodes.iter().find(|n| n.name == "a").unwrap();
    assert_eq!(a_seen.score, 0, "b hears a's score: {seen_by_b:?}");
    assert!(!a.cluster().ping[0].up);
    assert!(
        a.metrics_text(9101).contains("tandem_hbd_ping_score 0"),
        "{}",
        a.metrics_text(9101)
    );

    // The target answers a again: equal scores, and with auto_failback
    // off the current owner (b) keeps the group.
    a.ns().nft_delete_table("tdm_ping").unwrap();
    a.wait(
        "both nodes scoring 1 again",
        Duration::from_secs(3),
        both_reach,
    );
    std::thread::sleep(Duration::from_millis(10 * KEEPALIVE_MS));
    assert!(
        b.is_active() && a.is_standby(),
        "{}\n{}",
        a.logs(),
        b.logs()
    );
    assert!(b.has_vip() && !a.has_vip());
}
