//! The table owner's transitions and drift handling against the recording
//! fake (the kernel versions run in the VM tier).

use std::sync::Arc;

use super::*;
use crate::backend::RecordingBackend;
use crate::plan::Op;

/// A fake data plane that the test can inspect while the owner holds it.
#[derive(Clone, Default)]
struct Shared(Arc<tokio::sync::Mutex<RecordingBackend>>);

impl Backend for Shared {
    async fn read(&mut self) -> Result<Table, BackendError> {
        self.0.lock().await.read().await
    }
    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Result<(), String>>, BackendError> {
        self.0.lock().await.apply(ops).await
    }
}

impl SyncControl for Shared {
    async fn set_sync(&mut self, role: Option<bool>) -> Result<(), BackendError> {
        self.0.lock().await.set_sync(role).await
    }
}

impl Connect for Shared {
    type Backend = Shared;
    async fn connect(&self) -> Result<Shared, BackendError> {
        Ok(self.clone())
    }
}

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
    (Owner::new(fake.clone(), config(yaml)), fake)
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
