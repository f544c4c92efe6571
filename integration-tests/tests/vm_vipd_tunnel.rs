//! vipd's real-server mode in the seed's TUN form, with real traffic
//! through the VM kernel's IPVS (the host kernel has no ipip): a director
//! tunnels a client's connections to two real servers whose vipd put the
//! VIP on `tunl0`, raised it, hid the VIP from ARP and relaxed reverse-path
//! filtering (set to strict beforehand, so traffic only flows if vipd
//! relaxed it). At STOPPED the VIP, the link and every sysctl are back.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tandem_integration_tests::block_on;
use tandem_integration_tests::guest::run_in_vm_with;
use tandem_integration_tests::netns::{Host, Lan, Netns};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_integration_tests::servers::{http_spread, named_http_server};
use tandem_ipvsd::backend::KernelBackend;
use tandem_ipvsd::ipvs::types::{Dest, Forward, Protocol, Service, ServiceKey, Tunnel};
use tandem_ipvsd::reconcile::reconcile;
use tandem_ipvsd::table::{ServiceSpec, Table};
use tandem_proto::resource::v1 as rpb;

const VM_TIMEOUT: Duration = Duration::from_secs(300);
const VIP: &str = "198.51.100.10";

/// An rr service on VIP:80 tunnelling (ipip) to `reals`, in `director`'s IPVS.
fn program(director: &Netns, reals: &[IpAddr]) {
    let vip: IpAddr = VIP.parse().unwrap();
    let mut spec = ServiceSpec::new(Service {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: vip,
            port: 80,
        },
        scheduler: "rr".into(),
        flags: 0,
        timeout: 0,
        netmask: u32::MAX,
        pe_name: None,
    });
    for addr in reals {
        spec = spec.with(Dest {
            addr: *addr,
            port: 80,
            forward: Forward::Tunnel,
            tunnel: Tunnel::Ipip,
            weight: 1,
            upper: 0,
            lower: 0,
        });
    }
    let mut table = Table::new();
    table.insert(spec);
    director
        .enter(move || {
            block_on(async {
                let mut kernel = KernelBackend::connect().await.unwrap();
                let report = reconcile(&mut kernel, &table, false).await.unwrap();
                assert!(report.converged(), "{report:?}");
            });
        })
        .unwrap();
}

const WATCHED: &[&str] = &[
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.tunl0.rp_filter",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.eth0.arp_ignore",
    "net.ipv4.conf.eth0.arp_announce",
];

/// A real server whose vipd runs in TUN real-server mode.
struct Real {
    host: Host,
    dir: tempfile::TempDir,
    _vipd: Daemon,
    before: Vec<String>,
}

impl Real {
    fn start(lan: &Lan, name: &'static str, cidr: &str) -> Self {
        let host = lan.host(name, cidr).unwrap();
        // Strict reverse-path filtering: a tunnelled packet from the
        // client arrives on tunl0 but routes back via eth0, so the kernel
        // drops it unless vipd relaxes this.
        host.ns
            .set_sysctl("net.ipv4.conf.all.rp_filter", "1")
            .unwrap();
        host.ns
            .set_sysctl("net.ipv4.conf.tunl0.rp_filter", "1")
            .unwrap();
        let before = WATCHED.iter().map(|k| host.ns.sysctl(k).unwrap()).collect();
        named_http_server(&host.ns, 80, name);
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "state_file: {}\nreal_server:\n  mode: tun\n  addresses: [{VIP}]\n  arp_interfaces: [eth0]\ninitial_state: standby\n",
            dir.path().join("vipd.state").display()
        );
        let vipd = Daemon::start_configured(&host.ns, "vipd", dir.path(), &config);
        let real = Self {
            host,
            dir,
            _vipd: vipd,
            before,
        };
        for _ in 0..100 {
            if real.status().state == rpb::State::Standby as i32 {
                return real;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("vipd did not enter STANDBY: {:?}", real.status());
    }

    fn status(&self) -> rpb::ResourceStatus {
        let socket = socket_in(self.dir.path(), "vipd");
        block_on(async {
            let channel = tandem_daemon::client::connect_unix(&socket).await.unwrap();
            rpb::resource_client::ResourceClient::new(channel)
                .get_status(rpb::GetStatusRequest {})
                .await
                .unwrap()
                .into_inner()
        })
    }

    fn stop(&self) {
        let socket = socket_in(self.dir.path(), "vipd");
        block_on(async {
            let channel = tandem_daemon::client::connect_unix(&socket).await.unwrap();
            rpb::resource_client::ResourceClient::new(channel)
                .transition(rpb::TransitionRequest {
                    target: rpb::State::Stopped.into(),
                    epoch: 1,
                })
                .await
                .unwrap();
        });
    }

    fn tunl0(&self) -> String {
        let out = self.host.ns.ip(&["addr", "show", "dev", "tunl0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn tunnelled_traffic_reaches_reals_whose_vipd_holds_the_vip_on_tunl0() {
    run_in_vm_with(
        "tunnelled_traffic_reaches_reals_whose_vipd_holds_the_vip_on_tunl0",
        &["vipd"],
        VM_TIMEOUT,
        || {
            let lan = Lan::new("tun").unwrap();
            let director = lan.host("dir", "198.51.100.1/24").unwrap();
            let client = lan.host("cli", "198.51.100.2/24").unwrap();
            director
                .ns
                .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])
                .unwrap();
            let reals = [
                Real::start(&lan, "real-1", "198.51.100.101/24"),
                Real::start(&lan, "real-2", "198.51.100.102/24"),
            ];
            for real in &reals {
                let tunl0 = real.tunl0();
                assert!(tunl0.contains(&format!("{VIP}/32")), "{tunl0}");
                assert!(tunl0.contains(",UP"), "vipd raised tunl0: {tunl0}");
                assert_eq!(
                    real.host
                        .ns
                        .sysctl("net.ipv4.conf.tunl0.rp_filter")
                        .unwrap(),
                    "0"
                );
                assert_eq!(
                    real.host
                        .ns
                        .sysctl("net.ipv4.conf.eth0.arp_ignore")
                        .unwrap(),
                    "1"
                );
            }
            let addrs: Vec<IpAddr> = reals.iter().map(|r| IpAddr::V4(r.host.addr)).collect();
            program(&director.ns, &addrs);
            let mut expected = BTreeMap::new();
            expected.insert("real-1".to_owned(), 10);
            expected.insert("real-2".to_owned(), 10);
            let vip = SocketAddr::new(VIP.parse().unwrap(), 80);
            assert_eq!(http_spread(&client.ns, vip, 20), expected);

            for real in &reals {
                real.stop();
                let tunl0 = real.tunl0();
                assert!(!tunl0.contains(VIP), "{tunl0}");
                assert!(!tunl0.contains(",UP"), "tunl0 down again: {tunl0}");
                let after: Vec<String> = WATCHED
                    .iter()
                    .map(|k| real.host.ns.sysctl(k).unwrap())
                    .collect();
                assert_eq!(after, real.before, "{WATCHED:?}");
            }
        },
    );
}
