//! The state file: what is saved comes back; an edited config file wins; a
//! file that is not ours is refused naming it.

use super::*;
use crate::config::IpvsdConfig;

const WEB: &str = "
virtual_services:
  - address: 198.51.100.10
    port: 80
    scheduler: rr
    reals:
      - address: 198.51.100.101
";

fn services(yaml: &str) -> Vec<VirtualService> {
    let c: IpvsdConfig = tandem_daemon::config::parse(Path::new("s.yaml"), yaml).unwrap();
    c.virtual_services
}

#[test]
fn a_saved_table_and_its_drains_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.pb");
    let base = services(WEB);
    let store = Store::new(&path, &base);
    assert_eq!(store.load().unwrap(), None, "no file yet");
    let mut changed = base.clone();
    let copy = changed[0].reals[0].clone();
    changed[0].reals.push(copy);
    changed[0].reals[1].address = "198.51.100.102".parse().unwrap();
    let key = changed[0].key().unwrap();
    let drained = vec![(key, "198.51.100.102".parse().unwrap(), 80)];
    store.save(&changed, &drained).unwrap();
    let back = Store::new(&path, &base).load().unwrap().unwrap();
    assert_eq!(back.services, changed);
    assert_eq!(back.drained, drained);
}

#[test]
fn an_edited_config_file_wins_over_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.pb");
    let base = services(WEB);
    Store::new(&path, &base).save(&[], &[]).unwrap();
    let edited = services(&WEB.replace("rr", "wrr"));
    assert_eq!(Store::new(&path, &edited).load().unwrap(), None);
    assert!(Store::new(&path, &base).load().unwrap().is_some());
}

#[test]
fn a_file_that_is_not_ours_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.pb");
    std::fs::write(&path, b"\xff\xff\xff garbage").unwrap();
    let err = Store::new(&path, &services(WEB))
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("move it away"), "{err}");
}
