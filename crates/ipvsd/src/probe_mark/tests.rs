//! Probe marks: handed out lowest free first and kept while a real stays,
//! adopted from a kernel table, refused when they clash or run out; probe
//! services hold their one real at weight 1 whatever its health.

use std::collections::HashMap;

use super::*;
use crate::config::IpvsdConfig;
use crate::effective::{Health, RealState, desired_table};
use crate::ipvs::types::Family;

const DR: &str = "
probe_marks: {first: 100, count: 3}
virtual_services:
  - address: 198.51.100.10
    port: 80
    forward: route
    quiescent: false
    check: {type: http, through_vip: true}
    reals:
      - address: 198.51.100.101
      - address: 198.51.100.102
      - address: 198.51.100.103
        check: {type: tcp}
";

fn config(yaml: &str) -> IpvsdConfig {
    tandem_daemon::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap()
}

fn refusal(yaml: &str) -> String {
    use tandem_daemon::DaemonConfig as _;
    config(yaml).validate("t.yaml").unwrap_err().to_string()
}

fn id(c: &IpvsdConfig, last: u8) -> RealId {
    let key = c.virtual_services[0].key().unwrap();
    (key, format!("198.51.100.{last}").parse().unwrap(), 80)
}

fn assigned(c: &IpvsdConfig) -> ProbeMarks {
    let mut marks = ProbeMarks::new(c.probe_marks);
    marks.assign(&c.virtual_services).unwrap();
    marks
}

fn fwmark(mark: u32) -> ServiceKey {
    ServiceKey::Fwmark {
        family: Family::V4,
        mark,
    }
}

#[test]
fn each_through_vip_real_gets_the_lowest_free_mark_in_table_order() {
    let c = config(DR);
    let marks = assigned(&c);
    let expected = BTreeMap::from([(id(&c, 101), 100), (id(&c, 102), 101)]);
    assert_eq!(
        marks.by_real(),
        &expected,
        "the tcp-checked real needs none"
    );
}

#[test]
fn a_real_keeps_its_mark_when_others_come_and_go() {
    let mut c = config(DR);
    let mut marks = assigned(&c);
    c.virtual_services[0].reals.remove(0);
    marks.assign(&c.virtual_services).unwrap();
    assert_eq!(marks.by_real(), &BTreeMap::from([(id(&c, 102), 101)]));
    let mut newcomer = c.virtual_services[0].reals[0].clone();
    newcomer.address = "198.51.100.104".parse().unwrap();
    c.virtual_services[0].reals.insert(0, newcomer);
    marks.assign(&c.virtual_services).unwrap();
    assert_eq!(
        marks.by_real(),
        &BTreeMap::from([(id(&c, 104), 100), (id(&c, 102), 101)])
    );
}

#[test]
fn probe_services_hold_their_real_at_weight_1_even_while_it_is_down() {
    let c = config(DR);
    let marks = assigned(&c);
    let states = HashMap::from([(
        id(&c, 101),
        RealState {
            health: Health::Down,
            ..RealState::default()
        },
    )]);
    let mut table = desired_table(&c.virtual_services, &states);
    let main = c.virtual_services[0].key().unwrap();
    assert_eq!(
        table.services[&main].dests.len(),
        2,
        "the down real left the non-quiescent service"
    );
    marks.add_probe_services(&c.virtual_services, &mut table);
    assert_eq!(table.services.len(), 3);
    let probe = &table.services[&fwmark(100)];
    assert_eq!(probe.service.scheduler, "rr");
    assert_eq!(probe.service.flags, crate::ipvs::abi::svc_flag::ONEPACKET);
    let dests: Vec<_> = probe.dests.values().collect();
    assert_eq!(dests.len(), 1);
    assert_eq!(
        dests[0].addr,
        "198.51.100.101".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!((dests[0].port, dests[0].weight), (80, 1));
    assert_eq!(dests[0].forward, Forward::Route);
    assert!(table.services.contains_key(&fwmark(101)));
}

#[test]
fn marks_of_probe_services_found_in_the_kernel_are_adopted() {
    let c = config(DR);
    let mut kernel = Table::new();
    // As a previous run left it: 101 on mark 102, 102 on mark 100.
    let mut swapped = ProbeMarks::new(c.probe_marks);
    swapped.by_real = BTreeMap::from([(id(&c, 101), 102), (id(&c, 102), 100)]);
    swapped.add_probe_services(&c.virtual_services, &mut kernel);
    let mut marks = assigned(&c);
    assert!(marks.adopt(&c.virtual_services, &kernel));
    assert_eq!(marks.by_real(), swapped.by_real());
    assert!(
        !marks.adopt(&c.virtual_services, &kernel),
        "adopting the same table again changes nothing"
    );
}

#[test]
fn a_service_on_a_probe_mark_or_too_few_marks_is_refused() {
    let clash = format!("{DR}  - fwmark: 101\n    reals: [{{address: 198.51.100.121}}]\n");
    let why = refusal(&clash);
    assert!(why.contains("virtual_services[1].fwmark"), "{why}");
    assert!(why.contains("0x65 is a probe mark"), "{why}");
    let why = refusal(&DR.replace("count: 3", "count: 1"));
    assert!(why.contains("probe_marks.count"), "{why}");
    assert!(why.contains("2 reals probe through the VIP"), "{why}");
    let why = refusal(&DR.replace("first: 100, count: 3", "first: 0xffffffff, count: 2"));
    assert!(why.contains("probe_marks.count"), "{why}");
}

#[test]
fn through_vip_is_refused_where_it_cannot_work() {
    let nat = refusal(&DR.replace("forward: route", "forward: masq"));
    assert!(
        nat.contains("virtual_services[0].check.through_vip"),
        "{nat}"
    );
    assert!(nat.contains("real 198.51.100.101: a NAT real"), "{nat}");
    let icmp = refusal(&DR.replace(
        "check: {type: tcp}",
        "check: {type: icmp, through_vip: true}",
    ));
    assert!(icmp.contains("reals[2].check.through_vip"), "{icmp}");
    assert!(
        icmp.contains("a icmp check cannot go through the VIP"),
        "{icmp}"
    );
    let fwmark = "
virtual_services:
  - fwmark: 7
    reals:
      - address: 198.51.100.101
        port: 80
        check: {type: tcp, through_vip: true}
";
    assert!(refusal(fwmark).contains("no VIP to probe through"));
    let v6 = "
virtual_services:
  - address: 2001:db8::10
    port: 80
    reals:
      - address: 2001:db8::101
        check: {type: tcp, through_vip: true}
";
    assert!(refusal(v6).contains("only IPv4"));
}

#[test]
fn the_range_reads_hexadecimal_marks() {
    let c = config("probe_marks: {first: 0x7b000000, count: 16}\n");
    assert_eq!(
        c.probe_marks,
        MarkRange {
            first: 0x7b00_0000,
            count: 16
        }
    );
    assert!(c.probe_marks.contains(0x7b00_000f));
    assert!(!c.probe_marks.contains(0x7b00_0010));
    assert!(!c.probe_marks.contains(0x7aff_ffff));
}
