//! The table owner: ipvsd's resource hook. It holds the config and the
//! reals' run-time state, derives the desired table from them, and drives
//! the data plane through the [`Backend`] seam:
//!
//! - STANDBY / ACTIVE: reconcile the data plane to the desired table; if
//!   anything is refused, put back the table found before and fail the
//!   transition (the resource stays where it was). Then the sync daemon:
//!   backup while STANDBY, master while ACTIVE.
//! - STOPPED: stop the sync daemon and remove the services one by one
//!   (never a flush).
//! - While STANDBY or ACTIVE, [`Owner::check_drift`] compares the data plane
//!   with the desired table and repairs or reports, per config.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::{MappedMutexGuard, MutexGuard};

use tandem_resource::{HookError, ResourceHook, State};

use crate::backend::{Backend, BackendError};
use crate::config::{DriftPolicy, IpvsdConfig};
use crate::effective::{RealId, RealState, desired_table};
use crate::reconcile::{Report, reconcile};
use crate::table::Table;

/// Connects the data plane when first needed (the kernel may lack IPVS).
pub trait Connect: Send + Sync + 'static {
    /// The data plane type.
    type Backend: Backend;
    /// Opens it.
    fn connect(&self) -> impl Future<Output = Result<Self::Backend, BackendError>> + Send;
}

/// Sync-daemon control, separate from the table so fakes can leave it out.
pub trait SyncControl: Send {
    /// Makes this node the sync master (`true`) or backup (`false`), or stops
    /// syncing (`None`).
    fn set_sync(
        &mut self,
        role: Option<bool>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// ipvsd's resource hook and table state.
pub struct Owner<C: Connect> {
    connect: C,
    backend: tokio::sync::Mutex<Option<C::Backend>>,
    config: Mutex<IpvsdConfig>,
    states: Mutex<HashMap<RealId, RealState>>,
    serving: Mutex<bool>,
}

impl<C: Connect> Owner<C>
where
    C::Backend: SyncControl,
{
    /// An owner of the table `config` describes.
    pub fn new(connect: C, config: IpvsdConfig) -> Self {
        Self {
            connect,
            backend: tokio::sync::Mutex::new(None),
            config: Mutex::new(config),
            states: Mutex::new(HashMap::new()),
            serving: Mutex::new(false),
        }
    }

    fn desired(&self) -> Table {
        let config = self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        desired_table(&config, &states)
    }

    /// Replaces the config (SIGHUP) and, while serving, applies it at once.
    pub async fn reload(&self, config: IpvsdConfig) -> Result<(), HookError> {
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        if *self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            let report = self.apply_desired().await?;
            tracing::info!(operations = report.applied.len(), "reloaded config applied");
        }
        Ok(())
    }

    /// The config in force.
    pub fn config(&self) -> IpvsdConfig {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The data plane, connected on first use (the kernel may lack IPVS at
    /// start; a later transition retries).
    async fn backend(&self) -> Result<MappedMutexGuard<'_, C::Backend>, BackendError> {
        let mut slot = self.backend.lock().await;
        let backend = match slot.take() {
            Some(backend) => backend,
            None => self.connect.connect().await?,
        };
        Ok(MutexGuard::map(slot, move |slot| slot.insert(backend)))
    }

    /// Reconciles to the desired table; on a refusal, restores what was
    /// there and fails with the refusals.
    async fn apply_desired(&self) -> Result<Report, HookError> {
        let desired = self.desired();
        let report = async {
            let mut b = self.backend().await?;
            let before = b.read().await?;
            let report = reconcile(&mut *b, &desired, false).await?;
            if !report.refused.is_empty() {
                let rollback = reconcile(&mut *b, &before, false).await?;
                if !rollback.converged() {
                    tracing::error!(remaining = ?rollback.remaining, "rollback of a failed apply did not converge");
                }
            }
            Ok::<_, BackendError>(report)
        }
        .await
        .map_err(|e| HookError(e.to_string()))?;
        if report.refused.is_empty() {
            return Ok(report);
        }
        let why: Vec<String> = report.refused.iter().map(|(_, why)| why.clone()).collect();
        Err(HookError(format!(
            "the kernel refused: {}; the previous table was restored",
            why.join("; ")
        )))
    }

    /// One drift check: compare, then repair or report per config. Returns
    /// the differences found (empty when in sync or not serving).
    pub async fn check_drift(&self) -> Result<Report, BackendError> {
        if !*self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Ok(Report::default());
        }
        let dry_run = self.config().drift == DriftPolicy::Report;
        let desired = self.desired();
        let report = reconcile(&mut *self.backend().await?, &desired, dry_run).await?;
        if !report.plan.is_empty() {
            let ops: Vec<String> = report.plan.iter().map(ToString::to_string).collect();
            if dry_run {
                tracing::warn!(drift = ?ops, "the kernel table differs from the desired one (drift: report)");
            } else {
                tracing::warn!(repaired = ?ops, refused = report.refused.len(), "repaired drift in the kernel table");
            }
        }
        Ok(report)
    }
}

impl<C: Connect> ResourceHook for Owner<C>
where
    C::Backend: SyncControl,
{
    async fn enter(&self, _from: State, to: State) -> Result<(), HookError> {
        let sync_wanted = self.config().sync.is_some();
        match to {
            State::Standby | State::Active => {
                let report = self.apply_desired().await?;
                tracing::info!(operations = report.applied.len(), %to, "kernel table reconciled");
                let role = sync_wanted.then_some(to == State::Active);
                let synced = async { self.backend().await?.set_sync(role).await };
                synced
                    .await
                    .map_err(|e| HookError(format!("sync daemon: {e}")))?;
                *self
                    .serving
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            }
            State::Stopped => {
                *self
                    .serving
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
                let cleared = async {
                    let mut b = self.backend().await?;
                    b.set_sync(None).await?;
                    reconcile(&mut *b, &Table::new(), false).await
                };
                let report = cleared.await.map_err(|e| HookError(e.to_string()))?;
                if !report.converged() {
                    return Err(HookError(format!(
                        "could not remove {} services",
                        report.remaining.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
