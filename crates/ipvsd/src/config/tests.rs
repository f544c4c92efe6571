//! Config validation: every rule names its field and the file.

use super::*;

fn check(yaml: &str) -> Result<IpvsdConfig, String> {
    let c: IpvsdConfig =
        tandem_daemon::config::parse(std::path::Path::new("/etc/tandem/ipvsd.yaml"), yaml)
            .map_err(|e| e.to_string())?;
    c.validate("/etc/tandem/ipvsd.yaml")
        .map_err(|e| e.to_string())?;
    Ok(c)
}

fn service(extra: &str) -> String {
    format!("virtual_services:\n  - address: 198.51.100.10\n    port: 80\n{extra}")
}

#[test]
fn the_seeds_cluster_is_a_valid_config() {
    let yaml = "
virtual_services:
  - name: web
    address: 198.51.100.10
    port: 80
    scheduler: rr
    forward: tunnel
    reals:
      - address: 198.51.100.11
      - address: 198.51.100.12
      - address: 198.51.100.101
      - address: 198.51.100.102
      - address: 198.51.100.103
";
    let c = check(yaml).unwrap();
    assert_eq!(c.virtual_services[0].reals.len(), 5);
    assert_eq!(c.drift, DriftPolicy::Repair);
}

#[test]
fn invalid_services_name_the_field() {
    for (extra, field, needle) in [
        (
            "    scheduler: fastest\n",
            "virtual_services[0].scheduler",
            "not one of",
        ),
        (
            "    scheduler: rr\n    scheduler_flags: [sh-port]\n",
            "virtual_services[0].scheduler_flags[0]",
            "not a flag of scheduler rr",
        ),
        (
            "    one_packet: true\n",
            "virtual_services[0].one_packet",
            "UDP services only",
        ),
        (
            "    reals:\n      - {address: 198.51.100.101}\n      - {address: 198.51.100.101}\n",
            "virtual_services[0].reals[1].address",
            "listed twice",
        ),
        (
            "    reals:\n      - {address: 198.51.100.101, port: 8080}\n",
            "virtual_services[0].reals[0].port",
            "service's own port",
        ),
        (
            "    forward: masq\n    reals:\n      - {address: \"2001:db8::1\"}\n",
            "virtual_services[0].reals[0].address",
            "other address family",
        ),
        (
            "    reals:\n      - {address: 198.51.100.101, weight: 70000}\n",
            "virtual_services[0].reals[0].weight",
            "0-65535",
        ),
        (
            "    persistence: {timeout: 5m, netmask: 255.0.255.0}\n",
            "virtual_services[0].persistence.netmask",
            "netmask",
        ),
        (
            "    fallback: \"[2001:db8::9]:80\"\n",
            "virtual_services[0].fallback",
            "address family",
        ),
        (
            "    check: {interval: 1s, timeout: 1s}\n",
            "virtual_services[0].check.timeout",
            "shorter than the interval",
        ),
        (
            "    check: {type: http, receive: 'ok(', receive_regex: true}\n",
            "virtual_services[0].check.receive",
            "not a regular expression",
        ),
        (
            "    reals:\n      - address: 198.51.100.101\n        check: {type: udp}\n",
            "virtual_services[0].reals[0].check.send",
            "required for a udp check",
        ),
    ] {
        let err = check(&service(extra)).unwrap_err();
        assert!(err.contains(&format!("field `{field}`")), "{extra}: {err}");
        assert!(err.contains(needle), "{extra}: {err}");
        assert!(err.starts_with("/etc/tandem/ipvsd.yaml"), "{err}");
    }
}

#[test]
fn port_zero_needs_persistence_and_services_are_unique() {
    let zero = "virtual_services:\n  - {address: 198.51.100.10, port: 0}\n";
    assert!(check(zero).unwrap_err().contains("needs persistence"));
    let twice = "virtual_services:\n  - {address: 198.51.100.10, port: 80}\n  - {address: 198.51.100.10, port: 80}\n";
    assert!(
        check(twice)
            .unwrap_err()
            .contains("virtual_services[1].address")
    );
    let fwm = "virtual_services:\n  - {fwmark: 7, port: 80}\n";
    assert!(check(fwm).unwrap_err().contains("no address or port"));
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let err =
        check("virtual_services:\n  - address: 198.51.100.10\n    port: 80\n    sheduler: rr\n")
            .unwrap_err();
    assert!(
        err.contains(":4:") && err.contains("virtual_services[0].sheduler"),
        "{err}"
    );
}

#[test]
fn a_check_that_cannot_parse_names_its_field_and_line() {
    for (check, needle) in [
        ("{interval: -1s}", "interval"),
        ("{type: smtp}", "smtp"),
        ("{rise: -2}", "rise"),
    ] {
        let err = check_yaml(check);
        assert!(err.starts_with("/etc/tandem/ipvsd.yaml"), "{check}: {err}");
        assert!(err.contains("virtual_services[0].check"), "{check}: {err}");
        assert!(err.contains(needle), "{check}: {err}");
        assert!(
            err.starts_with("/etc/tandem/ipvsd.yaml:5:"),
            "{check}: {err}"
        );
    }
}

fn check_yaml(spec: &str) -> String {
    check(&service(&format!("    forward: masq\n    check: {spec}\n"))).unwrap_err()
}
