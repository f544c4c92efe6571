//! Tier 2: vipd in namespaces on a bridge — two directors and a client, as
//! in the seed. The client's neighbour table must follow the VIP to the
//! new ACTIVE director without the client asking (the gratuitous ARP or
//! unsolicited NA did it), seen in a capture of the client's frames. A
//! real server hides the VIP from ARP, and every sysctl vipd changed is
//! back at STOPPED, also across a vipd restart.
//!
//! IPv6 uses the documentation prefix 2001:db8::/32 (RFC 3849), the IPv6
//! counterpart of the TEST-NETs, inside these namespaces only.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use tandem_integration_tests::block_on;
use tandem_integration_tests::capture::Capture;
use tandem_integration_tests::netns::{Host, Lan, Netns};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_proto::resource::v1 as rpb;
use tandem_proto::vip::v1 as vpb;

const VIP: &str = "198.51.100.10";
const VIP6: &str = "2001:db8::10";

/// A namespace on the LAN running vipd.
struct Node {
    host: Host,
    dir: tempfile::TempDir,
    vipd: Option<Daemon>,
}

impl Node {
    fn new(lan: &Lan, label: &str, cidr: &str) -> Self {
        let host = lan.host(label, cidr).unwrap();
        Self {
            host,
            dir: tempfile::tempdir().unwrap(),
            vipd: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ns(&self) -> &Netns {
        &self.host.ns
    }

    /// Starts vipd with `config` (the state file goes in the node's dir).
    fn start(&mut self, config: &str) {
        let config = format!(
            "state_file: {}\nverify_interval: 100ms\n{config}",
            self.path("vipd.state").display()
        );
        self.vipd = Some(Daemon::start_configured(
            self.ns(),
            "vipd",
            self.dir.path(),
            &config,
        ));
    }

    async fn channel(&self) -> tonic::transport::Channel {
        tandem_daemon::client::connect_unix(&socket_in(self.dir.path(), "vipd"))
            .await
            .unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut d) = self.vipd.take() {
            d.signal(rustix::process::Signal::KILL);
            d.wait_exit(Duration::from_secs(5));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("vipd.log")).unwrap_or_default()
    }

    /// Transition; Err carries the refusal's message.
    fn transition(&self, state: rpb::State, epoch: u64) -> Result<rpb::ResourceStatus, String> {
        block_on(async {
            let channel = self.channel().await;
            rpb::resource_client::ResourceClient::new(channel)
                .transition(rpb::TransitionRequest {
                    target: state.into(),
                    epoch,
                })
                .await
                .map(|r| r.into_inner().status.unwrap())
                .map_err(|s| s.message().to_owned())
        })
    }

    fn go(&self, state: rpb::State, epoch: u64) {
        if let Err(e) = self.transition(state, epoch) {
            panic!("{state:?}: {e}\n{}", self.log());
        }
    }

    fn status(&self) -> rpb::ResourceStatus {
        block_on(async {
            let channel = self.channel().await;
            rpb::resource_client::ResourceClient::new(channel)
                .get_status(rpb::GetStatusRequest {})
                .await
                .unwrap()
                .into_inner()
        })
    }

    fn addresses(&self) -> Vec<vpb::Address> {
        block_on(async {
            let channel = self.channel().await;
            vpb::vip_client::VipClient::new(channel)
                .list_addresses(vpb::ListAddressesRequest {})
                .await
                .unwrap()
                .into_inner()
                .addresses
        })
    }

    fn mac(&self) -> [u8; 6] {
        mac_of(self.ns(), "eth0")
    }

    /// `ip addr show dev` as text.
    fn addrs_on(&self, dev: &str) -> String {
        let out = self.ns().ip(&["addr", "show", "dev", dev]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.ip(&["-br", "link", "show", "dev", dev]).unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let mac = line
        .split_whitespace()
        .find(|w| w.len() == 17 && w.matches(':').count() == 5)
        .unwrap_or_else(|| panic!("no MAC in '{line}'"));
    parse_mac(mac)
}

fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// The client's neighbour entry for `addr`: its MAC, if it has one.
fn neighbour(ns: &Netns, addr: &str) -> Option<[u8; 6]> {
    let out = ns.ip(&["neigh", "show", addr]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(parse_mac)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends one UDP datagram from `ns` to `addr`:9, which makes the kernel
/// resolve `addr` (ARP or NS) first.
fn poke(ns: &Netns, addr: &str) {
    let target: IpAddr = addr.parse().unwrap();
    ns.enter(|| {
        let bind = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(bind).unwrap();
        let _ = socket.send_to(b"x", (target, 9));
    })
    .unwrap();
}

/// Two directors in the seed's dual role and a client on one LAN.
struct Cluster {
    a: Node,
    b: Node,
    client: Host,
    _lan: Lan,
}

fn cluster(label: &str, extra: &str) -> Cluster {
    tandem_integration_tests::require_root();
    let lan = Lan::new(label).unwrap();
    let mut a = Node::new(&lan, "a", "198.51.100.11/24");
    let mut b = Node::new(&lan, "b", "198.51.100.12/24");
    let client = lan.host("client", "198.51.100.50/24").unwrap();
    let config = format!(
        "addresses:\n  - address: {VIP}/24\n    interface: eth0\n    label: eth0:vip\nreal_server:\n  mode: dr\n{extra}"
    );
    a.start(&config);
    b.start(&config);
    Cluster {
        a,
        b,
        client,
        _lan: lan,
    }
}

#[test]
fn gratuitous_arp_moves_the_client_to_the_new_active_without_it_asking() {
    let c = cluster("vip4", "announce:\n  count: 3\n  interval: 50ms\n");
    let (mac_a, mac_b, mac_client) = (c.a.mac(), c.b.mac(), mac_of(&c.client.ns, "eth0"));
    c.a.go(rpb::State::Standby, 1);
    c.b.go(rpb::State::Standby, 1);
    assert!(
        c.b.addrs_on("lo").contains(&format!("{VIP}/32")),
        "{}",
        c.b.addrs_on("lo")
    );
    assert_eq!(
        c.b.ns().sysctl("net.ipv4.conf.all.arp_ignore").unwrap(),
        "1"
    );

    // A takes the VIP: off its lo, onto eth0 with the label.
    c.a.go(rpb::State::Active, 2);
    assert!(!c.a.addrs_on("lo").contains(VIP));
    assert!(
        c.a.addrs_on("eth0")
            .contains(&format!("{VIP}/24 scope global secondary eth0:vip"))
    );
    assert_eq!(
        c.a.ns().sysctl("net.ipv4.conf.all.arp_ignore").unwrap(),
        "0",
        "A's real-server sysctls are back"
    );

    // The client resolves the VIP: only A answers (B hides it on lo).
    poke(&c.client.ns, VIP);
    wait_for(
        "the client to resolve the VIP",
        Duration::from_secs(3),
        || neighbour(&c.client.ns, VIP).is_some(),
    );
    assert_eq!(neighbour(&c.client.ns, VIP), Some(mac_a));

    // Failover: A to STANDBY, B to ACTIVE. The client says nothing.
    let capture = Capture::start(&c.client.ns).unwrap();
    c.a.go(rpb::State::Standby, 3);
    c.b.go(rpb::State::Active, 3);
    wait_for(
        "the client's entry to flip to B",
        Duration::from_secs(3),
        || neighbour(&c.client.ns, VIP) == Some(mac_b),
    );
    std::thread::sleep(Duration::from_millis(200));
    let frames = capture.stop();

    let vip: [u8; 4] = VIP.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let garps: Vec<_> = frames
        .iter()
        .filter_map(|f| f.arp())
        .filter(|a| a.sender_mac == mac_b && a.sender_ip == vip && a.target_ip == vip)
        .collect();
    assert!(
        garps.iter().any(|a| a.op == 1) && garps.iter().any(|a| a.op == 2),
        "B sent both gratuitous ARP forms: {garps:?}"
    );
    let asked: Vec<_> = frames
        .iter()
        .filter_map(|f| f.arp())
        .filter(|a| a.op == 1 && a.sender_mac == mac_client && a.target_ip == vip)
        .collect();
    assert!(
        asked.is_empty(),
        "the client sent ARP requests for the VIP: {asked:?}"
    );
    assert!(
        frames
            .iter()
            .all(|f| f.src() != mac_a || f.arp().is_none_or(|a| a.sender_ip != vip)),
        "A, now STANDBY, announced the VIP"
    );

    // The API agrees with the host.
    let listed = c.b.addresses();
    let director = listed
        .iter()
        .find(|a| a.placement == vpb::Placement::Director as i32)
        .unwrap();
    assert!(director.wanted && director.present, "{director:?}");
    assert!(director.announcements >= 2, "{director:?}");
    let hidden = listed
        .iter()
        .find(|a| a.placement == vpb::Placement::RealServer as i32)
        .unwrap();
    assert!(!hidden.wanted && !hidden.present, "{hidden:?}");
}

#[test]
fn unsolicited_na_moves_the_client_to_the_new_active_without_it_asking() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("vip6").unwrap();
    let mut a = Node::new(&lan, "a", "198.51.100.11/24");
    let mut b = Node::new(&lan, "b", "198.51.100.12/24");
    let client = lan.host("client", "198.51.100.50/24").unwrap();
    client
        .ns
        .ip(&["addr", "add", "2001:db8::50/64", "dev", "eth0", "nodad"])
        .unwrap();
    let config = format!(
        "addresses:\n  - address: {VIP6}/64\n    interface: eth0\nannounce:\n  count: 3\n  interval: 50ms\n"
    );
    a.start(&config);
    b.start(&config);
    let (mac_a, mac_b, mac_client) = (a.mac(), b.mac(), mac_of(&client.ns, "eth0"));

    a.go(rpb::State::Active, 1);
    assert!(a.addrs_on("eth0").contains(&format!("{VIP6}/64")));
    poke(&client.ns, VIP6);
    wait_for(
        "the client to resolve the VIP",
        Duration::from_secs(3),
        || neighbour(&client.ns, VIP6).is_some(),
    );
    assert_eq!(neighbour(&client.ns, VIP6), Some(mac_a));

    let capture = Capture::start(&client.ns).unwrap();
    a.go(rpb::State::Standby, 2);
    b.go(rpb::State::Active, 2);
    wait_for(
        "the client's entry to flip to B",
        Duration::from_secs(3),
        || neighbour(&client.ns, VIP6) == Some(mac_b),
    );
    let frames = capture.stop();
    let vip6 = VIP6.parse::<std::net::Ipv6Addr>().unwrap().octets();
    assert!(
        frames
            .iter()
            .any(|f| f.src() == mac_b && f.neighbour() == Some((136, vip6))),
        "B sent an unsolicited NA for the VIP"
    );
    let asked: Vec<_> = frames
        .iter()
        .filter(|f| f.src() == mac_client && f.neighbour() == Some((135, vip6)))
        .collect();
    assert!(asked.is_empty(), "the client solicited the VIP: {asked:?}");
    assert!(!a.addrs_on("eth0").contains(VIP6), "A dropped the VIP");
}

#[test]
fn a_real_server_hides_the_vip_and_gets_its_sysctls_back_even_across_a_restart() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("viprs").unwrap();
    let mut rs = Node::new(&lan, "rs", "198.51.100.21/24");
    let client = lan.host("client", "198.51.100.50/24").unwrap();
    // Values the operator had before vipd: not the defaults, so a restore
    // to defaults would be caught.
    rs.ns()
        .set_sysctl("net.ipv4.conf.eth0.arp_announce", "1")
        .unwrap();
    rs.ns()
        .set_sysctl("net.ipv4.conf.all.arp_ignore", "0")
        .unwrap();
    let before: Vec<(String, String)> = [
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
        "net.ipv4.conf.eth0.arp_ignore",
        "net.ipv4.conf.eth0.arp_announce",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), rs.ns().sysctl(k).unwrap()))
    .collect();

    // Control: without vipd an address on lo IS answered in ARP, so the
    // assertion below can fail.
    rs.ns()
        .ip(&["addr", "add", "198.51.100.99/32", "dev", "lo"])
        .unwrap();
    poke(&client.ns, "198.51.100.99");
    wait_for(
        "the control address to resolve",
        Duration::from_secs(3),
        || neighbour(&client.ns, "198.51.100.99").is_some(),
    );
    rs.ns()
        .ip(&["addr", "del", "198.51.100.99/32", "dev", "lo"])
        .unwrap();

    rs.start(&format!(
        "real_server:\n  mode: dr\n  addresses: [{VIP}]\n  arp_interfaces: [eth0]\ninitial_state: standby\n"
    ));
    wait_for(
        "vipd to enter STANDBY by itself",
        Duration::from_secs(5),
        || rs.status().state == rpb::State::Standby as i32,
    );
    assert!(rs.addrs_on("lo").contains(&format!("{VIP}/32")));
    assert_eq!(
        rs.ns().sysctl("net.ipv4.conf.eth0.arp_ignore").unwrap(),
        "1"
    );
    assert_eq!(
        rs.ns().sysctl("net.ipv4.conf.eth0.arp_announce").unwrap(),
        "2"
    );

    let capture = Capture::start(&client.ns).unwrap();
    for _ in 0..3 {
        poke(&client.ns, VIP);
        std::thread::sleep(Duration::from_millis(300));
    }
    let frames = capture.stop();
    let vip: [u8; 4] = VIP.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let asked = frames
        .iter()
        .filter_map(|f| f.arp())
        .filter(|a| a.op == 1 && a.target_ip == vip)
        .count();
    assert!(asked > 0, "the client asked for the VIP");
    let answers: Vec<_> = frames
        .iter()
        .filter_map(|f| f.arp())
        .filter(|a| a.op == 2 && a.sender_ip == vip)
        .collect();
    assert!(
        answers.is_empty(),
        "the real server answered ARP for its hidden VIP: {answers:?}"
    );
    assert_eq!(neighbour(&client.ns, VIP), None);

    // A restart (SIGKILL) keeps the VIP where it is; the new vipd still
    // knows what to put back.
    rs.kill();
    assert!(
        rs.addrs_on("lo").contains(&format!("{VIP}/32")),
        "kept across the crash"
    );
    rs.start(&format!(
        "real_server:\n  mode: dr\n  addresses: [{VIP}]\n  arp_interfaces: [eth0]\n"
    ));
    rs.go(rpb::State::Standby, 1);
    rs.go(rpb::State::Stopped, 2);
    assert!(!rs.addrs_on("lo").contains(VIP), "{}", rs.addrs_on("lo"));
    for (key, value) in &before {
        assert_eq!(
            &rs.ns().sysctl(key).unwrap(),
            value,
            "{key} is back to its old value"
        );
    }
    assert!(!rs.path("vipd.state").exists(), "nothing left to put back");
}

#[test]
fn bad_host_input_is_refused_by_name_and_changes_nothing() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("vipbad").unwrap();
    let mut node = Node::new(&lan, "a", "198.51.100.11/24");

    // A missing interface, after a good VIP: neither is applied.
    node.start(&format!(
        "addresses:\n  - address: {VIP}/24\n    interface: eth0\n  - address: 198.51.100.20/24\n    interface: eth9\nip_forward: true\n"
    ));
    let forward = node.ns().sysctl("net.ipv4.ip_forward").unwrap();
    let e = node.transition(rpb::State::Active, 1).unwrap_err();
    assert!(
        e.contains("198.51.100.20/24: interface eth9 does not exist"),
        "{e}"
    );
    assert!(!node.addrs_on("eth0").contains(VIP), "nothing half-applied");
    assert_eq!(node.ns().sysctl("net.ipv4.ip_forward").unwrap(), forward);
    assert_eq!(node.status().state, rpb::State::Stopped as i32);
    node.kill();

    // The node's own address is not a VIP vipd may take.
    node.start("addresses:\n  - address: 198.51.100.11/24\n    interface: eth0\n");
    let e = node.transition(rpb::State::Active, 1).unwrap_err();
    assert!(
        e.contains("198.51.100.11 is already a local address on eth0, not one vipd added"),
        "{e}"
    );
    node.kill();

    // A config error stops vipd before it starts, naming the field.
    std::fs::write(
        node.path("bad.yaml"),
        "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n    label: eth1:vip\n",
    )
    .unwrap();
    let out = node
        .ns()
        .command(
            tandem_integration_tests::process::binary("vipd")
                .to_str()
                .unwrap(),
        )
        .args([
            "--check-config",
            "--config",
            node.path("bad.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("addresses[0].label"), "{stderr}");
}
