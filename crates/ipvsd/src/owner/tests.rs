//! The table owner's transitions and drift handling against the recording
//! fake (the kernel versions run in the VM tier).

use super::*;
use crate::backend::SharedRecording;
use crate::plan::Op;

type Shared = SharedRecording;

const SEED: &str = "
sync: {interface: eth0, sync_id: 7}
virtual_services:
  - address: 198.51.100.10
    port: 80
    scheduler: rr
    forward: tunnel
    reals:
      - address: 198.51.100.101
      - address: 198.51.100.102
";

fn config(yaml: &str) -> IpvsdConfig {
    tandem_daemon::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap()
}

fn owner(yaml: &str) -> (Owner<Shared>, Shared) {
    let fake = Shared::default();
    (Owner::new(fake.clone(), config(yaml)).unwrap(), fake)
}

#[tokio::test]
async fn standby_loads_the_table_as_sync_backup_and_active_makes_it_master() {
    let (owner, fake) = owner(SEED);
    owner.enter(State::Stopped, State::Standby).await.unwrap();
    {
        let f = fake.0.lock().await;
        assert_eq!((f.table.services.len(), f.table.dest_count()), (1, 2));
        assert_eq!(f.sync, Some(false));
    }
    owner.enter(State::Standby, State::Active).await.unwrap();
    let f = fake.0.lock().await;
    assert_eq!(f.sync, Some(true));
    assert_eq!(
        f.applied.len(),
        3,
        "ACTIVE after STANDBY changes no table entry"
    );
}

#[tokio::test]
async fn stopped_removes_the_services_one_by_one_and_stops_syncing() {
    let (owner, fake) = owner(SEED);
    owner.enter(State::Stopped, State::Active).await.unwrap();
    owner.enter(State::Active, State::Stopped).await.unwrap();
    let f = fake.0.lock().await;
    assert!(f.table.services.is_empty());
    assert_eq!(f.sync, None);
    assert!(matches!(f.applied.last(), Some(Op::DeleteService(_))));
}

#[tokio::test]
async fn a_refused_operation_fails_the_transition_and_restores_the_table() {
    let (owner, fake) = owner(SEED);
    fake.0.lock().await.refuse = vec![2];
    let err = owner
        .enter(State::Stopped, State::Standby)
        .await
        .unwrap_err();
    assert!(
        err.0.contains("refused") && err.0.contains("restored"),
        "{err}"
    );
    let f = fake.0.lock().await;
    assert!(
        f.table.services.is_empty(),
        "the half-applied table was not rolled back: {:?}",
        f.table
    );
    assert_eq!(
        f.sync, None,
        "the sync daemon was started despite the failure"
    );
}

#[tokio::test]
async fn drift_is_repaired_or_only_reported_per_config() {
    for (policy, repaired) in [("repair", true), ("report", false)] {
        let (owner, fake) = owner(&format!("drift: {policy}\n{SEED}"));
        owner.enter(State::Stopped, State::Standby).await.unwrap();
        // Someone deletes a real by hand.
        let key = *fake.0.lock().await.table.services.keys().next().unwrap();
        let gone = Op::DeleteDest(key, "198.51.100.102".parse().unwrap(), 80);
        assert!(crate::plan::apply_to(&mut fake.0.lock().await.table, &gone));
        let report = owner.check_drift().await.unwrap();
        assert_eq!(report.plan.len(), 1, "{policy}");
        assert_eq!(
            fake.0.lock().await.table.dest_count(),
            if repaired { 2 } else { 1 },
            "{policy}"
        );
    }
}

#[tokio::test]
async fn no_drift_check_while_stopped() {
    let (owner, fake) = owner(SEED);
    let report = owner.check_drift().await.unwrap();
    assert!(report.plan.is_empty());
    assert!(fake.0.lock().await.applied.is_empty());
}

fn real(address: &str) -> crate::config::RealServer {
    crate::config::RealServer {
        address: address.parse().unwrap(),
        port: None,
        weight: 1,
        forward: None,
        upper_threshold: 0,
        lower_threshold: 0,
        check: None,
    }
}

fn seed_key() -> crate::ipvs::types::ServiceKey {
    config(SEED).virtual_services[0].key().unwrap()
}

#[tokio::test]
async fn a_change_while_stopped_is_kept_and_applied_at_standby() {
    let (owner, fake) = owner(SEED);
    let (change, ()) = owner
        .change(false, |m| m.put_real(seed_key(), real("198.51.100.103")))
        .await
        .unwrap();
    assert!(change.plan.is_empty(), "nothing to apply while stopped");
    assert!(fake.0.lock().await.applied.is_empty());
    owner.enter(State::Stopped, State::Standby).await.unwrap();
    assert_eq!(fake.0.lock().await.table.dest_count(), 3);
}

#[tokio::test]
async fn a_change_while_serving_is_applied_or_only_planned() {
    let (owner, fake) = owner(SEED);
    owner.enter(State::Stopped, State::Active).await.unwrap();
    let before = fake.0.lock().await.applied.len();
    let (dry, ()) = owner
        .change(true, |m| m.put_real(seed_key(), real("198.51.100.103")))
        .await
        .unwrap();
    assert_eq!(dry.plan.len(), 1);
    assert!(!dry.applied);
    assert_eq!(fake.0.lock().await.applied.len(), before);
    assert_eq!(owner.read(|m| m.desired().dest_count()).await, 2);

    let (done, ()) = owner
        .change(false, |m| m.put_real(seed_key(), real("198.51.100.103")))
        .await
        .unwrap();
    assert_eq!(done.plan, dry.plan);
    assert_eq!(fake.0.lock().await.table.dest_count(), 3);
    assert_eq!(done.version, dry.version + 1);
}

#[tokio::test]
async fn a_change_the_kernel_refuses_leaves_kernel_and_model_as_they_were() {
    let (owner, fake) = owner(SEED);
    owner.enter(State::Stopped, State::Active).await.unwrap();
    let kernel_before = fake.0.lock().await.table.clone();
    let version = owner.read(Model::version).await;
    {
        let mut f = fake.0.lock().await;
        let next = f.applied.len();
        // The new service goes in, its second real is refused.
        f.refuse = vec![next + 2];
    }
    let mut vs = config(SEED).virtual_services[0].clone();
    vs.port = Some(443);
    vs.reals.truncate(2);
    let err = owner
        .change(false, |m| m.put_service(vs))
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeError::Refused(_)), "{err}");
    assert_eq!(fake.0.lock().await.table, kernel_before);
    assert_eq!(owner.read(Model::version).await, version);
    assert_eq!(owner.read(|m| m.services().len()).await, 1);
}

#[tokio::test]
async fn reload_keeps_api_changes_unless_the_files_services_changed() {
    let (owner, fake) = owner(SEED);
    owner.enter(State::Stopped, State::Standby).await.unwrap();
    owner
        .change(false, |m| m.put_real(seed_key(), real("198.51.100.103")))
        .await
        .unwrap();
    owner
        .reload(config(&format!("drift: report\n{SEED}")))
        .await
        .unwrap();
    assert_eq!(fake.0.lock().await.table.dest_count(), 3, "API change lost");
    assert_eq!(owner.config().drift, DriftPolicy::Report);

    let edited = SEED.replace("      - address: 198.51.100.102\n", "");
    owner.reload(config(&edited)).await.unwrap();
    assert_eq!(fake.0.lock().await.table.dest_count(), 1);
}

#[tokio::test]
async fn a_reload_that_moves_the_probe_marks_is_refused_and_changes_nothing() {
    let (owner, fake) = owner(SEED);
    owner.enter(State::Stopped, State::Standby).await.unwrap();
    let edited = SEED.replace("      - address: 198.51.100.102\n", "");
    let err = owner
        .reload(config(&format!(
            "drift: report\nprobe_marks: {{first: 100, count: 10}}\n{edited}"
        )))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("probe_marks"), "{err}");
    assert_eq!(fake.0.lock().await.table.dest_count(), 2, "table changed");
    assert_eq!(owner.config().drift, DriftPolicy::Repair, "config changed");
}

#[tokio::test]
async fn watchers_see_structural_changes_only() {
    let (owner, _fake) = owner(SEED);
    let mut rx = owner.subscribe();
    let first = rx.borrow_and_update().clone();
    assert_eq!(first.services.len(), 1);
    owner
        .observe(|m| {
            m.set_health(
                (seed_key(), "198.51.100.101".parse().unwrap(), 80),
                crate::effective::Health::Down,
                "timeout".into(),
            )
        })
        .await
        .unwrap();
    assert!(!rx.has_changed().unwrap(), "a health change was published");
    owner
        .change(false, |m| m.delete_service(seed_key()))
        .await
        .unwrap();
    assert!(rx.has_changed().unwrap());
    let next = rx.borrow_and_update().clone();
    assert!(next.services.is_empty());
    assert_eq!(next.version, first.version + 1);
}

#[tokio::test]
async fn a_restarted_owner_restores_api_changes_and_drains_from_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "state_file: {}\n{SEED}",
        dir.path().join("table.pb").display()
    );
    let first = Owner::restore(Shared::default(), config(&yaml)).unwrap();
    first
        .change(false, |m| m.put_real(seed_key(), real("198.51.100.103")))
        .await
        .unwrap();
    let drained = (seed_key(), "198.51.100.101".parse().unwrap(), 80);
    first
        .change(false, |m| {
            m.set_drain(drained, crate::effective::Drain::Draining { drain: 1 });
            Ok(())
        })
        .await
        .unwrap();
    drop(first);

    let (fake, second) = {
        let fake = Shared::default();
        let owner = Owner::restore(fake.clone(), config(&yaml)).unwrap();
        (fake, owner)
    };
    second.enter(State::Stopped, State::Standby).await.unwrap();
    let f = fake.0.lock().await;
    assert_eq!(f.table.dest_count(), 3, "the API's real was lost");
    let weight = f.table.services.values().next().unwrap().dests[&(drained.1, 80)].weight;
    assert_eq!(weight, 0, "the drain was lost");
}

#[tokio::test]
async fn the_health_check_reports_drift_and_the_sync_backups_connections() {
    let (owner, fake) = owner(&format!("drift: report\n{SEED}"));
    assert_eq!(owner.check_health().await, None, "not serving");
    owner.enter(State::Stopped, State::Standby).await.unwrap();
    fake.0
        .lock()
        .await
        .conns
        .insert((seed_key(), "198.51.100.101".parse().unwrap(), 80), 7);
    let (health, detail) = owner.check_health().await.unwrap();
    assert_eq!(health, Health::Ok);
    assert_eq!(
        detail,
        "kernel table in sync; sync backup, 7 connections known"
    );

    let key = seed_key();
    let gone = Op::DeleteDest(key, "198.51.100.102".parse().unwrap(), 80);
    assert!(crate::plan::apply_to(&mut fake.0.lock().await.table, &gone));
    fake.0.lock().await.sync = None;
    let (health, detail) = owner.check_health().await.unwrap();
    assert_eq!(health, Health::Degraded);
    assert_eq!(
        detail,
        "kernel table differs by 1 operations (drift: report); the sync daemon is not running"
    );
}

const THROUGH_VIP: &str = "
probe_marks: {first: 100, count: 8}
virtual_services:
  - address: 198.51.100.10
    port: 80
    scheduler: rr
    forward: route
    check: {type: tcp, through_vip: true}
    reals:
      - address: 198.51.100.101
      - address: 198.51.100.102
";

#[tokio::test]
async fn probe_marks_are_published_only_while_their_services_are_in_the_kernel() {
    let (owner, fake) = owner(THROUGH_VIP);
    let mut rx = owner.subscribe();
    assert!(rx.borrow_and_update().probe_marks.is_empty(), "STOPPED");
    owner.enter(State::Stopped, State::Standby).await.unwrap();
    assert!(rx.has_changed().unwrap());
    let marks: Vec<u32> = rx
        .borrow_and_update()
        .probe_marks
        .values()
        .copied()
        .collect();
    assert_eq!(marks, [100, 101]);
    assert_eq!(fake.0.lock().await.table.services.len(), 3);
    owner.enter(State::Standby, State::Stopped).await.unwrap();
    assert!(rx.borrow_and_update().probe_marks.is_empty());
    assert!(fake.0.lock().await.table.services.is_empty());
}

#[tokio::test]
async fn a_restart_adopts_the_probe_marks_in_the_kernel_and_moves_nothing() {
    let (first, fake) = owner(THROUGH_VIP);
    first.enter(State::Stopped, State::Standby).await.unwrap();
    // A later real took mark 100 while 101 had 101; then the first real went.
    first
        .change(false, |m| {
            m.delete_real(seed_key(), "198.51.100.101".parse().unwrap(), None)
        })
        .await
        .unwrap();
    first
        .change(false, |m| m.put_real(seed_key(), real("198.51.100.103")))
        .await
        .unwrap();
    let before = fake.0.lock().await.table.clone();
    let ops_before = fake.0.lock().await.applied.len();
    // Restarted with the table as it now is: config order would hand out
    // 100 to .102, but the kernel has .102 on 101.
    let mut yaml = THROUGH_VIP.replace("      - address: 198.51.100.101\n", "");
    yaml.push_str("      - address: 198.51.100.103\n");
    let second = Owner::new(fake.clone(), config(&yaml)).unwrap();
    second.enter(State::Stopped, State::Standby).await.unwrap();
    let f = fake.0.lock().await;
    assert_eq!(
        f.applied.len(),
        ops_before,
        "adoption issued {:?}",
        &f.applied[ops_before..]
    );
    assert_eq!(f.table, before);
    let marks = second.subscribe().borrow().probe_marks.clone();
    assert_eq!(marks.values().copied().collect::<Vec<_>>(), [101, 100]);
}
