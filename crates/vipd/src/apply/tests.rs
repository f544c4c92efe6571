//! `apply` against an in-memory host that can fail its n-th change: every
//! failure point of every transition must leave host and journal exactly
//! as they were. (The real kernel path is exercised in the namespace tier.)

use std::collections::BTreeMap;
use std::sync::Mutex;

use tandem_resource::State;

use super::*;
use crate::config::VipdConfig;
use crate::host::{HostAddr, TANDEM_ADDR_PROTO};
use crate::layout::layout;

#[derive(Clone, Debug, PartialEq, Eq)]
struct World {
    links: Vec<Link>,
    addresses: Vec<HostAddr>,
    sysctls: BTreeMap<String, String>,
}

struct FakeHost {
    world: Mutex<World>,
    /// Fail the change with this number (0-based); None: never.
    fail_at: Option<usize>,
    changes: Mutex<usize>,
}

fn link(index: u32, name: &str) -> Link {
    Link {
        index,
        name: name.into(),
        mac: Some([2, 0, 0, 0, 0, index as u8]),
        up: name != "tunl0" && name != "ip6tnl0",
        lower_up: true,
    }
}

impl FakeHost {
    fn new(fail_at: Option<usize>) -> Self {
        let sysctls = [
            "net/ipv4/conf/all/arp_ignore",
            "net/ipv4/conf/all/arp_announce",
            "net/ipv4/conf/eth0/arp_ignore",
            "net/ipv4/conf/eth0/arp_announce",
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/tunl0/rp_filter",
            "net/ipv4/ip_forward",
            "net/ipv4/conf/eth0/accept_local",
            "net/ipv6/conf/eth0/disable_ipv6",
            "net/ipv6/conf/all/forwarding",
            "net/ipv6/conf/ip6tnl0/disable_ipv6",
        ]
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                if k.ends_with("rp_filter") { "1" } else { "0" }.to_owned(),
            )
        })
        .collect();
        Self {
            world: Mutex::new(World {
                links: vec![
                    link(1, "lo"),
                    link(2, "eth0"),
                    link(3, "tunl0"),
                    link(4, "ip6tnl0"),
                ],
                addresses: vec![HostAddr {
                    ifindex: 2,
                    cidr: "198.51.100.11/24".parse().unwrap(),
                    label: None,
                    proto: 0,
                }],
                sysctls,
            }),
            fail_at,
            changes: Mutex::new(0),
        }
    }

    /// The world, addresses in a canonical order (undo may re-add in
    /// another order than the kernel listed them).
    fn world(&self) -> World {
        let mut w = self.world.lock().unwrap().clone();
        w.addresses
            .sort_by_key(|a| (a.ifindex, a.cidr, a.label.clone(), a.proto));
        w
    }

    /// Counts a change; fails it when its number is `fail_at`.
    fn change(&self, op: &str) -> Result<(), HostError> {
        let mut n = self.changes.lock().unwrap();
        let this = *n;
        *n += 1;
        if Some(this) == self.fail_at {
            return Err(HostError::new(op, "injected failure"));
        }
        Ok(())
    }

    fn changes(&self) -> usize {
        *self.changes.lock().unwrap()
    }
}

impl Host for FakeHost {
    fn links(&self) -> Result<Vec<Link>, HostError> {
        Ok(self.world().links)
    }
    fn addresses(&self) -> Result<Vec<HostAddr>, HostError> {
        Ok(self.world().addresses)
    }
    fn add_address(&self, link: &Link, cidr: Cidr, label: Option<&str>) -> Result<(), HostError> {
        self.change("add")?;
        self.world.lock().unwrap().addresses.push(HostAddr {
            ifindex: link.index,
            cidr,
            label: label.map(str::to_owned),
            proto: TANDEM_ADDR_PROTO,
        });
        Ok(())
    }
    fn del_address(&self, link: &Link, cidr: Cidr) -> Result<(), HostError> {
        self.change("del")?;
        self.world
            .lock()
            .unwrap()
            .addresses
            .retain(|a| !(a.ifindex == link.index && a.cidr == cidr));
        Ok(())
    }
    fn set_link_up(&self, link: &Link, up: bool) -> Result<(), HostError> {
        self.change("link")?;
        for l in &mut self.world.lock().unwrap().links {
            if l.index == link.index {
                l.up = up;
            }
        }
        Ok(())
    }
    fn read_sysctl(&self, key: &str) -> Result<String, HostError> {
        self.world()
            .sysctls
            .get(key)
            .cloned()
            .ok_or_else(|| HostError::new(format!("reading {key}"), "No such file or directory"))
    }
    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), HostError> {
        self.change("sysctl")?;
        self.world
            .lock()
            .unwrap()
            .sysctls
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

fn config(text: &str) -> VipdConfig {
    tandem_daemon::config::parse(std::path::Path::new("vipd.yaml"), text).unwrap()
}

const SEED: &str = "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n    label: eth0:vip\n  - address: 2001:db8::10/64\n    interface: eth0\nreal_server:\n  mode: tun\nip_forward: true\n";

fn has(world: &World, iface: u32, cidr: &str) -> bool {
    let cidr: Cidr = cidr.parse().unwrap();
    world
        .addresses
        .iter()
        .any(|a| a.ifindex == iface && a.cidr == cidr)
}

#[test]
fn the_seed_cycle_places_addresses_and_puts_every_sysctl_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vipd.state");
    let host = FakeHost::new(None);
    let original = host.world();
    let config = config(SEED);
    let mut journal = Journal::default();

    apply(&host, &layout(&config, State::Standby), &mut journal, &path).unwrap();
    let w = host.world();
    assert!(has(&w, 3, "198.51.100.10/32"), "VIP on tunl0");
    assert!(has(&w, 4, "2001:db8::10/128"), "IPv6 on ip6tnl0");
    assert_eq!(w.sysctls["net/ipv4/conf/eth0/arp_ignore"], "1");
    assert_eq!(w.sysctls["net/ipv4/conf/tunl0/rp_filter"], "0");
    assert!(w.links.iter().any(|l| l.name == "tunl0" && l.up));

    apply(&host, &layout(&config, State::Active), &mut journal, &path).unwrap();
    let w = host.world();
    assert!(has(&w, 2, "198.51.100.10/24") && has(&w, 2, "2001:db8::10/64"));
    assert!(!has(&w, 3, "198.51.100.10/32"));
    assert_eq!(w.sysctls["net/ipv4/conf/eth0/arp_ignore"], "0");
    assert_eq!(w.sysctls["net/ipv4/ip_forward"], "1");
    assert!(
        w.links.iter().any(|l| l.name == "tunl0" && !l.up),
        "tunl0 down as in `lvs start`"
    );
    assert_eq!(Journal::load(&path).unwrap(), journal);

    // Adopting: the same layout again changes nothing.
    let before = host.changes();
    apply(&host, &layout(&config, State::Active), &mut journal, &path).unwrap();
    assert_eq!(host.changes(), before);

    apply(&host, &layout(&config, State::Stopped), &mut journal, &path).unwrap();
    assert_eq!(host.world(), original);
    assert_eq!(journal, Journal::default());
    assert!(!path.exists());
}

#[test]
fn accept_local_is_on_while_standby_and_active_and_put_back_at_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vipd.state");
    let host = FakeHost::new(None);
    let original = host.world();
    let config = config(&format!("{SEED}accept_local: [eth0]\n"));
    let mut journal = Journal::default();
    let key = "net/ipv4/conf/eth0/accept_local";
    for state in [State::Standby, State::Active] {
        apply(&host, &layout(&config, state), &mut journal, &path).unwrap();
        assert_eq!(host.world().sysctls[key], "1", "{state}");
    }
    apply(&host, &layout(&config, State::Stopped), &mut journal, &path).unwrap();
    assert_eq!(host.world(), original);
}

#[test]
fn a_failure_at_any_step_leaves_host_and_journal_as_they_were() {
    let config = config(SEED);
    for (from, to) in [
        (State::Stopped, State::Standby),
        (State::Standby, State::Active),
        (State::Active, State::Standby),
        (State::Active, State::Stopped),
    ] {
        for k in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vipd.state");
            // Reach `from` on a host that does not fail, then fail step k.
            let good = FakeHost::new(None);
            let mut journal = Journal::default();
            for state in [State::Standby, State::Active] {
                if from == State::Stopped || (from == State::Standby && state == State::Active) {
                    break;
                }
                apply(&good, &layout(&config, state), &mut journal, &path).unwrap();
            }
            let host = FakeHost {
                world: Mutex::new(good.world()),
                fail_at: Some(k),
                changes: Mutex::new(0),
            };
            let (world, saved) = (host.world(), journal.clone());
            match apply(&host, &layout(&config, to), &mut journal, &path) {
                Ok(_) => {
                    assert!(k > 0, "{from}->{to} made no change at all");
                    break;
                }
                Err(e) => {
                    assert!(e.to_string().contains("injected failure"), "{e}");
                    assert!(
                        e.to_string()
                            .contains("everything done before it was undone"),
                        "{e}"
                    );
                    assert_eq!(host.world(), world, "{from}->{to}, failing step {k}");
                    assert_eq!(journal, saved, "{from}->{to}, failing step {k}");
                    assert_eq!(Journal::load(&path).unwrap(), saved);
                }
            }
        }
    }
}

#[test]
fn preflight_refuses_before_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vipd.state");
    let cases = [
        (
            "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n  - address: 198.51.100.20/24\n    interface: eth9\n",
            "198.51.100.20/24: interface eth9 does not exist",
        ),
        (
            "addresses:\n  - address: 198.51.100.11/24\n    interface: eth0\n",
            "198.51.100.11 is already a local address on eth0, not one vipd added",
        ),
        (
            "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\nreal_server:\n  mode: tun\n",
            "198.51.100.10/32: interface tunl0 does not exist (load the ipip module)",
        ),
    ];
    for (text, expected) in cases {
        let host = FakeHost::new(None);
        // A host without the ipip module has no tunl0.
        host.world
            .lock()
            .unwrap()
            .links
            .retain(|l| l.name != "tunl0");
        let config = config(text);
        let mut journal = Journal::default();
        let state = if text.contains("real_server") {
            State::Standby
        } else {
            State::Active
        };
        let e = apply(&host, &layout(&config, state), &mut journal, &path).unwrap_err();
        assert!(e.to_string().contains(expected), "{e}");
        assert_eq!(host.changes(), 0, "{expected}");
    }

    let host = FakeHost::new(None);
    host.world
        .lock()
        .unwrap()
        .sysctls
        .insert("net/ipv6/conf/eth0/disable_ipv6".into(), "1".into());
    let config = config("addresses:\n  - address: 2001:db8::10/64\n    interface: eth0\n");
    let e = apply(
        &host,
        &layout(&config, State::Active),
        &mut Journal::default(),
        &path,
    )
    .unwrap_err();
    assert!(e.to_string().contains("eth0 has IPv6 disabled"), "{e}");
    assert_eq!(host.changes(), 0);
}
