//! Targets: a `through_vip` check goes to the VIP with its probe service's
//! mark, and says why it cannot be probed while ipvsd published no mark.

use std::path::Path;

use tandem_ipvsd::config::IpvsdConfig;

use super::*;

const DR: &str = "
virtual_services:
  - address: 198.51.100.10
    port: 80
    forward: route
    reals:
      - address: 198.51.100.101
        check: {type: http, port: 8080, through_vip: true}
      - address: 198.51.100.102
        check: {type: http}
";

fn services() -> Vec<VirtualService> {
    let config: IpvsdConfig = tandem_daemon::config::parse(Path::new("t.yaml"), DR).unwrap();
    config.virtual_services
}

fn marks(services: &[VirtualService]) -> BTreeMap<RealId, u32> {
    let key = services[0].key().unwrap();
    BTreeMap::from([((key, "198.51.100.101".parse().unwrap(), 80), 0x7a00_0000)])
}

#[test]
fn a_through_vip_target_probes_the_vip_with_its_mark() {
    let services = services();
    let targets = targets_of(&services, &marks(&services));
    let vip = &targets[0];
    assert_eq!(vip.addr, "198.51.100.10:8080".parse().unwrap());
    assert_eq!(vip.mark, Some(0x7a00_0000));
    let Plan::Http(plan) = &vip.plan else {
        panic!("{:?}", vip.plan)
    };
    assert_eq!(
        plan.host, "198.51.100.10",
        "Host is the VIP, as a client sends it"
    );
    let direct = &targets[1];
    assert_eq!(direct.addr, "198.51.100.102:80".parse().unwrap());
    assert_eq!(direct.mark, None);
}

#[test]
fn without_a_published_mark_a_through_vip_target_says_why_it_is_not_probed() {
    let targets = targets_of(&services(), &BTreeMap::new());
    let Plan::Unprobeable(reason) = &targets[0].plan else {
        panic!("{:?}", targets[0].plan)
    };
    assert!(reason.contains("only while STANDBY or ACTIVE"), "{reason}");
    assert_eq!(targets[0].mark, None);
    assert!(matches!(targets[1].plan, Plan::Http(_)));
}
