//! Reconciling a data plane to a desired table: read what it has, plan the
//! difference, apply it (or only show it: dry run), and report exactly what
//! was applied and what was refused. After a partial failure the data plane
//! is read again, so the report's `remaining` is the true outstanding diff,
//! which the next pass retries. Never a flush.

use crate::backend::{Backend, BackendError};
use crate::plan::{Op, plan};
use crate::table::Table;

/// What one reconcile pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The plan, in order.
    pub plan: Vec<Op>,
    /// Ops the data plane accepted (empty on a dry run).
    pub applied: Vec<Op>,
    /// Ops it refused, with why.
    pub refused: Vec<(Op, String)>,
    /// The diff still outstanding after the pass (read back when anything
    /// was refused; empty when everything applied).
    pub remaining: Vec<Op>,
}

impl Report {
    /// True when the data plane now matches the desired table.
    pub fn converged(&self) -> bool {
        self.remaining.is_empty()
    }
}

/// One pass: make `backend` hold `desired`, or with `dry_run` only plan it.
pub async fn reconcile<B: Backend>(
    backend: &mut B,
    desired: &Table,
    dry_run: bool,
) -> Result<Report, BackendError> {
    let current = backend.read().await?;
    reconcile_from(backend, &current, desired, dry_run).await
}

/// [`reconcile`] when the caller has just read the data plane's table
/// (`current`), so it is not read twice.
pub async fn reconcile_from<B: Backend>(
    backend: &mut B,
    current: &Table,
    desired: &Table,
    dry_run: bool,
) -> Result<Report, BackendError> {
    let ops = plan(current, desired);
    if dry_run || ops.is_empty() {
        return Ok(Report {
            remaining: ops.clone(),
            plan: ops,
            ..Report::default()
        });
    }
    let results = backend.apply(&ops).await?;
    let mut report = Report {
        plan: ops.clone(),
        ..Report::default()
    };
    for (op, result) in ops.into_iter().zip(results) {
        match result {
            Ok(()) => report.applied.push(op),
            Err(why) => report.refused.push((op, why)),
        }
    }
    if !report.refused.is_empty() {
        report.remaining = plan(&backend.read().await?, desired);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RecordingBackend;
    use crate::ipvs::types::{Dest, Forward, Protocol, Service, ServiceKey, Tunnel};
    use crate::table::ServiceSpec;

    fn key() -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.51.100.10".parse().unwrap(),
            port: 80,
        }
    }

    fn spec(weights: &[(u8, i32)]) -> ServiceSpec {
        let service = Service {
            key: key(),
            scheduler: "wrr".into(),
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe_name: None,
        };
        weights
            .iter()
            .fold(ServiceSpec::new(service), |s, (last, weight)| {
                s.with(Dest {
                    addr: [198, 51, 100, *last].into(),
                    port: 80,
                    forward: Forward::Route,
                    tunnel: Tunnel::Ipip,
                    weight: *weight,
                    upper: 0,
                    lower: 0,
                })
            })
    }

    fn table(s: ServiceSpec) -> Table {
        let mut t = Table::new();
        t.insert(s);
        t
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_dry_run_shows_the_exact_plan_and_changes_nothing() {
        let mut fake = RecordingBackend::with(table(spec(&[(101, 1)])));
        let desired = table(spec(&[(101, 5), (102, 1)]));
        let report = block_on(reconcile(&mut fake, &desired, true)).unwrap();
        assert_eq!(report.plan.len(), 2);
        assert!(report.applied.is_empty());
        assert!(fake.applied.is_empty());
        assert_eq!(fake.table, table(spec(&[(101, 1)])));
    }

    #[test]
    fn adoption_of_an_identical_table_issues_no_operation() {
        let running = table(spec(&[(101, 1), (102, 1), (103, 1)]));
        let mut fake = RecordingBackend::with(running.clone());
        let report = block_on(reconcile(&mut fake, &running, false)).unwrap();
        assert!(report.plan.is_empty() && report.converged());
        assert!(fake.applied.is_empty());
    }

    #[test]
    fn a_refused_op_is_reported_and_the_next_pass_finishes_the_job() {
        let mut fake = RecordingBackend::with(table(spec(&[(101, 1)])));
        fake.refuse = vec![1];
        let desired = table(spec(&[(101, 2), (102, 1), (103, 1)]));
        let first = block_on(reconcile(&mut fake, &desired, false)).unwrap();
        assert_eq!((first.applied.len(), first.refused.len()), (2, 1));
        assert!(first.refused[0].1.contains("refused"));
        assert_eq!(
            first.remaining,
            vec![first.refused[0].0.clone()],
            "exactly the refused op is outstanding"
        );
        let second = block_on(reconcile(&mut fake, &desired, false)).unwrap();
        assert!(second.converged());
        assert_eq!(fake.table, desired);
    }

    #[test]
    fn drift_made_by_hand_is_repaired_by_the_next_pass() {
        let desired = table(spec(&[(101, 1), (102, 1)]));
        let mut fake = RecordingBackend::with(desired.clone());
        // Someone ran `ipvsadm -d` and `ipvsadm -e -w 9` by hand.
        fake.table = table(spec(&[(101, 9)]));
        let report = block_on(reconcile(&mut fake, &desired, false)).unwrap();
        assert_eq!(report.applied.len(), 2);
        assert_eq!(fake.table, desired);
    }
}
