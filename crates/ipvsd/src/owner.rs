//! The table owner: ipvsd's resource hook. It holds the [`Model`] (the
//! services and the reals' run-time state) and drives the data plane
//! through the [`Backend`] seam. One lock covers the model, the data plane
//! and whether the table is being served, so a change over the API and a
//! resource transition never interleave.
//!
//! - STANDBY / ACTIVE: reconcile the data plane to the desired table; if
//!   anything is refused, put back the table found before and fail the
//!   transition (the resource stays where it was). Then the sync daemon:
//!   backup while STANDBY, master while ACTIVE.
//! - STOPPED: stop the sync daemon and remove the services one by one
//!   (never a flush).
//! - A change ([`Owner::change`]) is made on a copy of the model; while
//!   serving, the copy's table is applied and the copy is kept only if the
//!   data plane took all of it (otherwise the data plane is rolled back).
//! - While serving, [`Owner::check_drift`] compares the data plane with the
//!   desired table and repairs or reports, per config.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use tandem_resource::{Health, HookError, ResourceHook, State};

use crate::backend::{Backend, BackendError, Counters};
use crate::config::{DriftPolicy, IpvsdConfig, VirtualService};
use crate::effective::RealId;
use crate::field::FieldError;
use crate::model::{Model, ModelError};
use crate::plan::Op;
use crate::probe_mark::MarkError;
use crate::reconcile::{Report, reconcile, reconcile_from};
use crate::store::{Store, StoreError};
use crate::table::Table;

/// Connects the data plane when first needed (the kernel may lack IPVS).
pub trait Connect: Send + Sync + 'static {
    /// The data plane type.
    type Backend: Backend + SyncControl;
    /// Opens it.
    fn connect(&self) -> impl Future<Output = Result<Self::Backend, BackendError>> + Send;
}

/// Sync-daemon control, separate from the table so fakes can leave it out.
pub trait SyncControl: Send {
    /// The sync daemon running: `Some(true)` master, `Some(false)` backup.
    fn sync_role(&mut self) -> impl Future<Output = Result<Option<bool>, BackendError>> + Send;
    /// Makes this node the sync master (`true`) or backup (`false`), or stops
    /// syncing (`None`).
    fn set_sync(
        &mut self,
        role: Option<bool>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Why a change was not made. Nothing of it was kept.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The result would be invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// It names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The data plane refused part of it; the rest was rolled back.
    #[error("the kernel refused: {0}; the previous table was restored")]
    Refused(String),
    /// The data plane could not be reached.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why the owner could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state file could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The probe marks cannot be handed out for the table to restore.
    #[error("probe marks: {0}")]
    Marks(#[from] MarkError),
}

impl From<ModelError> for ChangeError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid(e) => Self::Invalid(e),
            ModelError::NotFound(what) => Self::NotFound(what),
        }
    }
}

/// What a change did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The data plane operations, in order (empty while not serving).
    pub plan: Vec<Op>,
    /// False for a dry run.
    pub applied: bool,
    /// The model's version after the change (unchanged by a dry run).
    pub version: u64,
}

/// The desired services as published to `Watch` subscribers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The model's version.
    pub version: u64,
    /// The services (shared with the model until it changes).
    pub services: Arc<Vec<VirtualService>>,
    /// The probe mark of each `through_vip` real, while the probe services
    /// are in the data plane (empty while not serving).
    pub probe_marks: Arc<BTreeMap<RealId, u32>>,
}

/// A consistent view for status: the model, and the data plane's counters
/// and sync role while serving.
#[derive(Clone, Debug)]
pub struct View {
    /// The model.
    pub model: Model,
    /// True while the data plane holds the table.
    pub serving: bool,
    /// Live counters (while serving).
    pub counters: Option<Counters>,
    /// The sync daemon: `Some(true)` master, `Some(false)` backup.
    pub sync: Option<bool>,
}

struct Inner<B> {
    backend: Option<B>,
    model: Model,
    serving: bool,
    store: Option<Store>,
}

/// ipvsd's resource hook and table state.
pub struct Owner<C: Connect> {
    connect: C,
    inner: tokio::sync::Mutex<Inner<C::Backend>>,
    config: Mutex<IpvsdConfig>,
    published: watch::Sender<Arc<Snapshot>>,
    next_drain: AtomicU64,
}

impl<C: Connect> Owner<C> {
    /// An owner of the table `config` describes (already validated),
    /// keeping no state file.
    pub fn new(connect: C, config: IpvsdConfig) -> Result<Self, MarkError> {
        let model = Model::new(config.virtual_services.clone(), config.probe_marks)?;
        Ok(Self::with(connect, config, model, None))
    }

    /// An owner that keeps the table in `config.state_file` (when set),
    /// starting from what the file holds if it grew from the config's
    /// current services.
    pub fn restore(connect: C, config: IpvsdConfig) -> Result<Self, StartError> {
        let Some(path) = &config.state_file else {
            return Ok(Self::new(connect, config)?);
        };
        let store = Store::new(path, &config.virtual_services);
        let model = match store.load()? {
            Some(stored) => {
                tracing::info!(file = %path.display(), services = stored.services.len(), drained = stored.drained.len(), "table restored from the state file");
                Model::restored(stored, config.probe_marks)?
            }
            None => Model::new(config.virtual_services.clone(), config.probe_marks)?,
        };
        Ok(Self::with(connect, config, model, Some(store)))
    }

    fn with(connect: C, config: IpvsdConfig, model: Model, store: Option<Store>) -> Self {
        let (published, _) = watch::channel(Arc::new(snapshot(&model, false)));
        Self {
            connect,
            inner: tokio::sync::Mutex::new(Inner {
                backend: None,
                model,
                serving: false,
                store,
            }),
            config: Mutex::new(config),
            published,
            next_drain: AtomicU64::new(1),
        }
    }

    /// The config in force (its services as loaded; the model may have
    /// changed since).
    pub fn config(&self) -> IpvsdConfig {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The desired services now and after every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.published.subscribe()
    }

    /// A fresh id for a drain.
    pub fn drain_id(&self) -> u64 {
        self.next_drain.fetch_add(1, Ordering::Relaxed)
    }

    /// Edits the model with `edit` and, while serving, applies the result
    /// (or with `dry_run` only plans it). All or nothing.
    pub async fn change<T>(
        &self,
        dry_run: bool,
        edit: impl FnOnce(&mut Model) -> Result<T, ModelError>,
    ) -> Result<(Change, T), ChangeError> {
        self.change_then(dry_run, edit, |_| {}).await
    }

    /// [`Owner::change`], running `then` under the same lock before the
    /// result is committed.
    async fn change_then<T>(
        &self,
        dry_run: bool,
        edit: impl FnOnce(&mut Model) -> Result<T, ModelError>,
        then: impl FnOnce(&mut Inner<C::Backend>),
    ) -> Result<(Change, T), ChangeError> {
        let mut inner = self.inner.lock().await;
        let mut next = inner.model.clone();
        let out = edit(&mut next)?;
        let plan = if inner.serving {
            let backend = backend(&self.connect, &mut inner.backend).await?;
            let before = backend.read().await?;
            apply_or_restore(backend, before, &next.desired(), dry_run).await?
        } else {
            Vec::new()
        };
        if !dry_run {
            then(&mut inner);
            self.commit(&mut inner, next);
        }
        Ok((
            Change {
                plan,
                applied: !dry_run,
                version: inner.model.version(),
            },
            out,
        ))
    }

    /// Records facts (health, a finished drain) in the model and, while
    /// serving, applies them. Unlike [`Owner::change`] the facts are kept
    /// even if the data plane refuses (the drift check retries).
    pub async fn observe<T>(&self, edit: impl FnOnce(&mut Model) -> T) -> T {
        let mut inner = self.inner.lock().await;
        let drained = inner.model.drained();
        let out = edit(&mut inner.model);
        if inner.model.drained() != drained {
            save(&inner);
        }
        if inner.serving {
            let desired = inner.model.desired();
            let applied = async {
                let backend = backend(&self.connect, &mut inner.backend).await?;
                reconcile(backend, &desired, false).await
            };
            match applied.await {
                Ok(report) if !report.refused.is_empty() => {
                    tracing::warn!(refused = ?report.refused, "the kernel refused a health update; the drift check retries");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not apply a health update"),
            }
        }
        out
    }

    /// Reads the model.
    pub async fn read<T>(&self, look: impl FnOnce(&Model) -> T) -> T {
        look(&self.inner.lock().await.model)
    }

    /// Live counters while serving; `None` when the data plane does not
    /// hold the table.
    pub async fn counters(&self) -> Result<Option<Counters>, BackendError> {
        let mut inner = self.inner.lock().await;
        if !inner.serving {
            return Ok(None);
        }
        let backend = backend(&self.connect, &mut inner.backend).await?;
        Ok(Some(backend.read_live().await?.1))
    }

    /// The model, and while serving the counters and sync role.
    pub async fn view(&self) -> Result<View, BackendError> {
        let mut inner = self.inner.lock().await;
        let (counters, sync) = if inner.serving {
            let backend = backend(&self.connect, &mut inner.backend).await?;
            (
                Some(backend.read_live().await?.1),
                backend.sync_role().await?,
            )
        } else {
            (None, None)
        };
        Ok(View {
            model: inner.model.clone(),
            serving: inner.serving,
            counters,
            sync,
        })
    }

    /// What the data plane holds now (the kernel table, whoever wrote it).
    pub async fn read_data_plane(&self) -> Result<Table, BackendError> {
        let mut inner = self.inner.lock().await;
        backend(&self.connect, &mut inner.backend)
            .await?
            .read()
            .await
    }

    /// Replaces the config (SIGHUP). Its services replace the model's only
    /// if they differ from the file's services as last loaded, so a reload
    /// for another setting keeps changes made over the API. Nothing changes
    /// if the data plane refuses the new table. The probe mark range is
    /// fixed while ipvsd runs: a reload that moves it is refused.
    pub async fn reload(&self, config: IpvsdConfig) -> Result<(), ChangeError> {
        let IpvsdConfig {
            virtual_services: loaded,
            probe_marks,
            ..
        } = self.config();
        if config.probe_marks != probe_marks {
            return Err(FieldError::new(
                "probe_marks",
                "cannot change while ipvsd runs (the kernel's probe services use the old range): restart ipvsd",
            )
            .into());
        }
        if config.virtual_services != loaded {
            let services = config.virtual_services.clone();
            let (change, ()) = self
                .change_then(
                    false,
                    |m| m.replace(services),
                    |inner| {
                        if let Some(store) = &mut inner.store {
                            store.rebase(&config.virtual_services);
                        }
                    },
                )
                .await?;
            tracing::info!(
                operations = change.plan.len(),
                "the file's virtual services changed; they replace the table"
            );
        }
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// One drift check: compare, then repair or report per config. Returns
    /// the differences found (empty when in sync or not serving).
    pub async fn check_drift(&self) -> Result<Report, BackendError> {
        let mut inner = self.inner.lock().await;
        if !inner.serving {
            return Ok(Report::default());
        }
        Ok(self.drift_pass(&mut inner).await?.0)
    }

    /// The drift check under the caller's lock, from one read of the data
    /// plane; also returns the counters of that read.
    async fn drift_pass(
        &self,
        inner: &mut Inner<C::Backend>,
    ) -> Result<(Report, Counters), BackendError> {
        let dry_run = self.config().drift == DriftPolicy::Report;
        let desired = inner.model.desired();
        let backend = backend(&self.connect, &mut inner.backend).await?;
        let (current, counters) = backend.read_live().await?;
        let report = reconcile_from(backend, &current, &desired, dry_run).await?;
        if !report.plan.is_empty() {
            let ops: Vec<String> = report.plan.iter().map(ToString::to_string).collect();
            if dry_run {
                tracing::warn!(drift = ?ops, "the kernel table differs from the desired one (drift: report)");
            } else {
                tracing::warn!(repaired = ?ops, refused = report.refused.len(), "repaired drift in the kernel table");
            }
        }
        Ok((report, counters))
    }

    /// The periodic check while serving: drift (repaired or reported, per
    /// config), then the sync daemon. Returns what the resource's health
    /// and detail should say, e.g. `kernel table in sync; sync backup,
    /// 1204 connections known`; `None` while not serving.
    pub async fn check_health(&self) -> Option<(Health, String)> {
        let sync_wanted = self.config().sync.is_some();
        let mut inner = self.inner.lock().await;
        if !inner.serving {
            return None;
        }
        let drift = self.drift_pass(&mut inner).await;
        let known = drift.as_ref().map_or(0, |(_, c)| c.connections());
        let mut health = Health::Ok;
        let mut detail = match drift.map(|(report, _)| report) {
            Ok(r) if r.plan.is_empty() => "kernel table in sync".to_owned(),
            Ok(r) if !r.refused.is_empty() => {
                health = Health::Degraded;
                format!("the kernel refused {} repairs of drift", r.refused.len())
            }
            Ok(r) if r.applied.is_empty() => {
                health = Health::Degraded;
                format!(
                    "kernel table differs by {} operations (drift: report)",
                    r.plan.len()
                )
            }
            Ok(r) => format!("repaired drift ({} operations)", r.applied.len()),
            Err(e) => {
                health = Health::Degraded;
                format!("cannot read the kernel table: {e}")
            }
        };
        if sync_wanted {
            let sync = async {
                let backend = backend(&self.connect, &mut inner.backend).await?;
                backend.sync_role().await
            };
            match sync.await {
                Ok(Some(true)) => detail.push_str("; sync master"),
                Ok(Some(false)) => {
                    let _ = write!(detail, "; sync backup, {known} connections known");
                }
                Ok(None) => {
                    health = Health::Degraded;
                    detail.push_str("; the sync daemon is not running");
                }
                Err(e) => {
                    health = Health::Degraded;
                    let _ = write!(detail, "; cannot read the sync daemon: {e}");
                }
            }
        }
        Some((health, detail))
    }

    fn commit(&self, inner: &mut Inner<C::Backend>, next: Model) {
        inner.model = next;
        save(inner);
        self.publish(inner);
    }

    /// Tells `Watch` subscribers, if the services or the probe marks in
    /// the data plane changed.
    fn publish(&self, inner: &Inner<C::Backend>) {
        let next = snapshot(&inner.model, inner.serving);
        self.published.send_if_modified(|current| {
            let changed =
                current.version != next.version || current.probe_marks != next.probe_marks;
            if changed {
                *current = Arc::new(next);
            }
            changed
        });
    }
}

/// Writes the model to the state file, if there is one. A failure is
/// logged, not returned: the change is already in the kernel.
fn save<B>(inner: &Inner<B>) {
    if let Some(store) = &inner.store
        && let Err(e) = store.save(inner.model.services(), &inner.model.drained())
    {
        tracing::error!(error = %e, "could not write the state file; a restart would lose the latest changes");
    }
}

fn snapshot(model: &Model, serving: bool) -> Snapshot {
    let probe_marks = if serving {
        model.probe_marks().by_real().clone()
    } else {
        BTreeMap::new()
    };
    Snapshot {
        version: model.version(),
        services: model.shared_services(),
        probe_marks: Arc::new(probe_marks),
    }
}

/// The data plane, connected on first use (the kernel may lack IPVS at
/// start; a later call retries).
async fn backend<'a, C: Connect>(
    connect: &C,
    slot: &'a mut Option<C::Backend>,
) -> Result<&'a mut C::Backend, BackendError> {
    Ok(match slot {
        Some(backend) => backend,
        None => slot.insert(connect.connect().await?),
    })
}

/// Reconciles `backend`, which holds `before`, to `desired` (or plans it);
/// on a refusal restores `before` and fails with the refusals. Returns the
/// plan.
async fn apply_or_restore<B: Backend>(
    backend: &mut B,
    before: Table,
    desired: &Table,
    dry_run: bool,
) -> Result<Vec<Op>, ChangeError> {
    let report = reconcile_from(backend, &before, desired, dry_run).await?;
    if report.refused.is_empty() {
        return Ok(report.plan);
    }
    let rollback = reconcile(backend, &before, false).await?;
    if !rollback.converged() {
        tracing::error!(remaining = ?rollback.remaining, "rollback of a failed apply did not converge");
    }
    let why: Vec<String> = report.refused.into_iter().map(|(_, why)| why).collect();
    Err(ChangeError::Refused(why.join("; ")))
}

impl<C: Connect> ResourceHook for Owner<C> {
    async fn enter(&self, _from: State, to: State) -> Result<(), HookError> {
        let sync_wanted = self.config().sync.is_some();
        let mut inner = self.inner.lock().await;
        let inner = &mut *inner;
        let fail = |e: &dyn std::fmt::Display| HookError(e.to_string());
        match to {
            State::Standby | State::Active => {
                let backend = backend(&self.connect, &mut inner.backend)
                    .await
                    .map_err(|e| fail(&e))?;
                let found = backend.read().await.map_err(|e| fail(&e))?;
                if !inner.serving && inner.model.adopt_probe_marks(&found) {
                    tracing::info!("probe marks taken over from the kernel's probe services");
                }
                let desired = inner.model.desired();
                let plan = apply_or_restore(backend, found, &desired, false)
                    .await
                    .map_err(|e| fail(&e))?;
                tracing::info!(operations = plan.len(), %to, "kernel table reconciled");
                let role = sync_wanted.then_some(to == State::Active);
                backend
                    .set_sync(role)
                    .await
                    .map_err(|e| HookError(format!("sync daemon: {e}")))?;
                inner.serving = true;
                self.publish(inner);
            }
            State::Stopped => {
                inner.serving = false;
                self.publish(inner);
                let backend = backend(&self.connect, &mut inner.backend)
                    .await
                    .map_err(|e| fail(&e))?;
                backend.set_sync(None).await.map_err(|e| fail(&e))?;
                let report = reconcile(backend, &Table::new(), false)
                    .await
                    .map_err(|e| fail(&e))?;
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
