//! [`Control`]: vipd's hold on the host. Transitions (the resource hook),
//! config reloads, the ACTIVE-time verification and on-demand
//! announcements all go through it, one at a time under one lock, so
//! they never interleave their kernel calls.

use std::net::IpAddr;
use std::sync::Arc;

use tandem_resource::{Health, HookError, ResourceHook, ResourceMachine, State};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::announce::{Announcer, Target, targets};
use crate::apply::{ApplyError, apply};
use crate::config::VipdConfig;
use crate::host::{HostError, Snapshot};
use crate::journal::Journal;
use crate::kernel::Kernel;
use crate::layout::{Layout, layout};

/// The shared state behind [`Control`].
struct Inner {
    kernel: Kernel,
    announcer: Announcer,
    guarded: Arc<Mutex<Guarded>>,
}

/// What only one task at a time may touch.
struct Guarded {
    config: VipdConfig,
    journal: Journal,
    /// The state the host was last made to match.
    state: State,
    /// Stops the announcement schedule of the current ACTIVE term.
    schedule: Option<CancellationToken>,
}

type Guard = OwnedMutexGuard<Guarded>;

/// vipd's hold on the host. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

/// Why a transition, reload or announcement could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The host could not be made to match.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Reading the host failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Announcing failed (the changes before it were undone).
    #[error("announcing: {0}")]
    Announce(std::io::Error),
    /// Announcing was asked for while not ACTIVE.
    #[error(
        "vipd is {0}, not ACTIVE: announcing an address this host does not serve would steal its traffic"
    )]
    NotActive(State),
    /// A blocking task died.
    #[error("a worker thread failed: {0}")]
    Worker(String),
}

impl Control {
    /// Opens the kernel and the journal at `config.state_file`.
    pub fn new(config: VipdConfig, announcer: Announcer) -> Result<Self, ControlError> {
        let journal = Journal::load(&config.state_file).map_err(ApplyError::from)?;
        if !journal.sysctls.is_empty() || !journal.links_up.is_empty() {
            tracing::info!(
                sysctls = journal.sysctls.len(),
                links = journal.links_up.len(),
                file = %config.state_file.display(),
                "found changes of an earlier run; they are put back at STOPPED"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                kernel: Kernel::open()?,
                announcer,
                guarded: Arc::new(Mutex::new(Guarded {
                    config,
                    journal,
                    state: State::Stopped,
                    schedule: None,
                })),
            }),
        })
    }

    /// The announcer (for its counters).
    pub fn announcer(&self) -> &Announcer {
        &self.inner.announcer
    }

    async fn lock(&self) -> Guard {
        Arc::clone(&self.inner.guarded).lock_owned().await
    }

    /// Runs `f` on a blocking thread with the kernel and the guarded state.
    async fn on_host<T: Send + 'static>(
        &self,
        mut guard: Guard,
        f: impl FnOnce(&Kernel, &Announcer, &mut Guarded) -> T + Send + 'static,
    ) -> Result<(Guard, T), ControlError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let out = f(&me.inner.kernel, &me.inner.announcer, &mut guard);
            (guard, out)
        })
        .await
        .map_err(|e| ControlError::Worker(e.to_string()))
    }

    /// The current config and the state the host matches.
    pub async fn settings(&self) -> (VipdConfig, State) {
        let guard = self.lock().await;
        (guard.config.clone(), guard.state)
    }

    /// The current config and the host's links and addresses, read together.
    pub async fn view(&self) -> Result<(VipdConfig, State, Snapshot), ControlError> {
        let guard = self.lock().await;
        let (guard, snapshot) = self.on_host(guard, |k, _, _| Snapshot::read(k)).await?;
        Ok((guard.config.clone(), guard.state, snapshot?))
    }

    /// Makes the host match `to` and, for ACTIVE, sends the first
    /// announcement round and starts the schedule. On failure the host is
    /// left as it was (and keeps announcing if it was ACTIVE).
    pub async fn enter(&self, to: State) -> Result<(), ControlError> {
        let guard = self.lock().await;
        self.change(guard, to, None).await
    }

    /// Replaces the config and makes the host match it in the current
    /// state; on failure the old config stays and the host is unchanged.
    pub async fn reload(&self, config: VipdConfig) -> Result<(), ControlError> {
        let mut guard = self.lock().await;
        let old = std::mem::replace(&mut guard.config, config);
        let state = guard.state;
        self.change(guard, state, Some(old)).await
    }

    /// Makes the host match `to` under the guarded config. On failure,
    /// `old_config` (a reload's) is put back and an ACTIVE host goes on
    /// announcing.
    async fn change(
        &self,
        mut guard: Guard,
        to: State,
        old_config: Option<VipdConfig>,
    ) -> Result<(), ControlError> {
        if let Some(stop) = guard.schedule.take() {
            stop.cancel();
        }
        let target = layout(&guard.config, to);
        let (mut guard, result) = self
            .on_host(guard, move |k, a, g| converge(k, a, g, &target))
            .await?;
        match result {
            Ok(targets) => {
                guard.state = to;
                if to == State::Active {
                    guard.schedule = Some(self.spawn_schedule(targets, &guard.config));
                }
                Ok(())
            }
            Err(e) => {
                if let Some(old) = old_config {
                    guard.config = old;
                }
                self.resume_schedule(guard).await;
                Err(e)
            }
        }
    }

    /// After a failed change: an ACTIVE host keeps its announcement schedule.
    async fn resume_schedule(&self, guard: Guard) {
        if guard.state != State::Active {
            return;
        }
        if let Ok((mut guard, Ok(targets))) = self
            .on_host(guard, |k, _, g| active_targets(k, &g.config))
            .await
        {
            guard.schedule = Some(self.spawn_schedule(targets, &guard.config));
        }
    }

    fn spawn_schedule(&self, targets: Vec<Target>, config: &VipdConfig) -> CancellationToken {
        let stop = CancellationToken::new();
        tokio::spawn(self.inner.announcer.clone().schedule(
            targets,
            config.announce.clone(),
            stop.clone(),
        ));
        stop
    }

    /// Sends one round now for the director VIPs in `only` (all when
    /// empty); refused unless ACTIVE. Returns the frames sent.
    pub async fn announce_now(&self, only: Vec<IpAddr>) -> Result<u64, ControlError> {
        let guard = self.lock().await;
        if guard.state != State::Active {
            return Err(ControlError::NotActive(guard.state));
        }
        let (_guard, sent) = self
            .on_host(guard, move |k, a, g| {
                let mut targets = active_targets(k, &g.config)?;
                if !only.is_empty() {
                    targets.retain(|t| only.contains(&t.addr));
                }
                a.round_blocking(&targets, &g.config.announce)
                    .map_err(ControlError::Announce)
            })
            .await?;
        sent
    }

    /// While ACTIVE: puts back (and announces) a VIP that vanished, and
    /// reports a VIP's link that is down as FAILED. None when not ACTIVE.
    pub async fn verify(&self) -> Option<(Health, String)> {
        let guard = self.lock().await;
        if guard.state != State::Active {
            return None;
        }
        let checked = self.on_host(guard, verify).await;
        Some(match checked {
            Ok((_, verdict)) => verdict,
            Err(e) => (Health::Degraded, e.to_string()),
        })
    }
}

/// Applies `target` and, when it announces, sends the first round (undoing
/// the changes if that fails). Returns the announced targets.
fn converge(
    kernel: &Kernel,
    announcer: &Announcer,
    guarded: &mut Guarded,
    target: &Layout,
) -> Result<Vec<Target>, ControlError> {
    let path = guarded.config.state_file.clone();
    let applied = apply(kernel, target, &mut guarded.journal, &path)?;
    if !target.announce {
        return Ok(Vec::new());
    }
    let announced = Snapshot::read(kernel)
        .map_err(ControlError::from)
        .and_then(|snapshot| {
            let targets = targets(&target.addresses, &snapshot);
            announcer
                .round_blocking(&targets, &guarded.config.announce)
                .map_err(ControlError::Announce)?;
            Ok(targets)
        });
    if announced.is_err() {
        let failed = applied.undo(kernel, &mut guarded.journal, &path);
        if !failed.is_empty() {
            tracing::error!(
                undo_failures = failed.len(),
                "the host could not be fully put back"
            );
        }
    }
    announced
}

fn active_targets(kernel: &Kernel, config: &VipdConfig) -> Result<Vec<Target>, ControlError> {
    let snapshot = Snapshot::read(kernel)?;
    Ok(targets(&layout(config, State::Active).addresses, &snapshot))
}

fn verify(kernel: &Kernel, announcer: &Announcer, guarded: &mut Guarded) -> (Health, String) {
    let target = layout(&guarded.config, State::Active);
    let snapshot = match Snapshot::read(kernel) {
        Ok(s) => s,
        Err(e) => return (Health::Degraded, format!("cannot read the host: {e}")),
    };
    let mut down = Vec::new();
    let mut missing = Vec::new();
    for w in &target.addresses {
        match snapshot.link(&w.interface) {
            Some(link) if link.up && link.lower_up => {
                if !snapshot.has(link.index, w.cidr) {
                    missing.push(w.cidr.to_string());
                }
            }
            Some(_) => down.push(format!("{} is down", w.interface)),
            None => down.push(format!("{} is gone", w.interface)),
        }
    }
    down.dedup();
    if !down.is_empty() {
        return (Health::Failed, down.join("; "));
    }
    if missing.is_empty() {
        return (Health::Ok, String::new());
    }
    tracing::warn!(vips = %missing.join(", "), "VIPs vanished from their interfaces while ACTIVE: adding them back");
    match converge(kernel, announcer, guarded, &target) {
        Ok(_) => (Health::Ok, String::new()),
        Err(e) => (
            Health::Failed,
            format!(
                "{} vanished and could not be put back: {e}",
                missing.join(", ")
            ),
        ),
    }
}

/// The resource hook: every transition is [`Control::enter`].
#[derive(Clone)]
pub struct VipHook(pub Control);

impl ResourceHook for VipHook {
    async fn enter(&self, _from: State, to: State) -> Result<(), HookError> {
        self.0.enter(to).await.map_err(|e| HookError(e.to_string()))
    }
}

/// While the daemon runs: verifies an ACTIVE host every `interval` and
/// reports the result as the resource's health.
pub async fn verify_loop(
    control: Control,
    machine: ResourceMachine<VipHook>,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if machine.status().pending.is_some() {
            continue;
        }
        if let Some((health, detail)) = control.verify().await {
            machine.set_health(health, detail);
        }
    }
}
