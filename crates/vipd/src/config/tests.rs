use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<VipdConfig, String> {
    let config: VipdConfig =
        tandem_daemon::config::parse(Path::new("vipd.yaml"), text).map_err(|e| e.to_string())?;
    config.validate("vipd.yaml").map_err(|e| e.to_string())?;
    Ok(config)
}

#[test]
fn the_seed_cluster_parses_with_defaults() {
    let c = parse(
        "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n    label: eth0:vip\nreal_server:\n  mode: tun\n",
    )
    .unwrap();
    assert_eq!(c.addresses[0].address.to_string(), "198.51.100.10/24");
    assert_eq!(c.announce, AnnounceSettings::default());
    assert_eq!(c.real_server_addresses()[0].to_string(), "198.51.100.10/32");
    assert_eq!(c.arp_interfaces(), vec!["eth0".to_owned()]);
    assert_eq!(c.state_file, PathBuf::from("/run/tandem/vipd.state"));
}

#[test]
fn bad_input_names_the_field() {
    let cases = [
        (
            "addresses:\n  - address: 198.51.100.10/33\n    interface: eth0\n",
            "/33",
        ),
        (
            "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0:1\n",
            "addresses[0].interface",
        ),
        (
            "addresses:\n  - address: 2001:db8::10/64\n    interface: eth0\n    label: eth0:v6\n",
            "addresses[0].label",
        ),
        (
            "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n  - address: 198.51.100.10/32\n    interface: eth1\n",
            "addresses[1].address",
        ),
        ("announce:\n  count: 0\n", "announce.count"),
        ("announce:\n  interval: 0s\n", "announce.interval"),
        ("announce:\n  refresh: 10ms\n", "announce.refresh"),
        ("real_server:\n  mode: dr\n", "real_server.addresses"),
        (
            "real_server:\n  mode: dr\n  addresses: [224.0.0.5]\n",
            "real_server.addresses[0]",
        ),
        ("real_server:\n  mode: hidden\n", "unknown variant"),
        ("initial_state: standby\n", "initial_state"),
        ("accept_local: [eth1, eth1]\n", "accept_local[1]"),
        ("accept_local: [\"eth1/x\"]\n", "accept_local[0]"),
        (
            "addresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n    colour: red\n",
            "colour",
        ),
    ];
    for (text, expected) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.contains(expected), "{text}: {e}");
    }
}
