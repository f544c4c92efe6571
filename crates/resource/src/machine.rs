//! [`ResourceMachine`]: the contract's rules around a daemon's hook.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, watch};

use crate::state::{Health, HookError, ResourceHook, State, Status};

/// Why a transition was refused or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The request's epoch is lower than the highest one accepted.
    #[error("stale epoch {requested}: this resource has accepted epoch {highest}")]
    StaleEpoch {
        /// The epoch the request carried.
        requested: u64,
        /// The highest epoch accepted so far.
        highest: u64,
    },
    /// The hook failed (or panicked); the resource stayed in `from`.
    #[error("{name}: transition {from} -> {to} failed: {source}")]
    HookFailed {
        /// The resource's name.
        name: String,
        /// The state the resource stayed in.
        from: State,
        /// The state it could not reach.
        to: State,
        /// What the hook said.
        #[source]
        source: HookError,
    },
}

/// What a successful transition did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The status after the transition.
    pub status: Status,
    /// False when the resource already was in the target state.
    pub changed: bool,
}

/// The resource state machine. Cheap to clone; clones share one machine.
///
/// Rules: a request with an epoch below the highest accepted is refused; a
/// request for the current state is a no-op (its epoch is still recorded);
/// transitions run one at a time in arrival order; a failing hook leaves the
/// previous state. The hook runs in its own task, so a caller that goes away
/// (an RPC cancelled by its client) cannot interrupt it half-way.
pub struct ResourceMachine<H> {
    inner: Arc<Inner<H>>,
}

struct Inner<H> {
    hook: H,
    /// Held for the whole of a transition: serialises them.
    turn: Arc<Mutex<()>>,
    status: watch::Sender<Status>,
}

impl<H> Clone for ResourceMachine<H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<H: ResourceHook> ResourceMachine<H> {
    /// A machine named `name` in state STOPPED, epoch 0, driving `hook`.
    pub fn new(name: impl Into<String>, hook: H) -> Self {
        let status = Status {
            name: name.into(),
            state: State::Stopped,
            epoch: 0,
            health: Health::Unknown,
            detail: String::new(),
            pending: None,
            transitions: 0,
            state_since_unix_ms: 0,
        };
        Self {
            inner: Arc::new(Inner {
                hook,
                turn: Arc::new(Mutex::new(())),
                status: watch::channel(status).0,
            }),
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every later change of status.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// The daemon's hook.
    pub fn hook(&self) -> &H {
        &self.inner.hook
    }

    /// Records the resource's health in its current state, for `WatchStatus`.
    pub fn set_health(&self, health: Health, detail: impl Into<String>) {
        let detail = detail.into();
        self.inner.status.send_if_modified(|s| {
            let changed = s.health != health || s.detail != detail;
            s.health = health;
            s.detail = detail;
            changed
        });
    }

    /// Moves the resource to `target` under ownership term `epoch`.
    pub async fn transition(&self, target: State, epoch: u64) -> Result<Outcome, TransitionError> {
        self.check_epoch(epoch)?;
        let turn = Arc::clone(&self.inner.turn).lock_owned().await;
        // Another transition may have raised the epoch while we waited.
        self.check_epoch(epoch)?;
        let from = self.status().state;
        self.inner.status.send_if_modified(|s| {
            let raised = epoch > s.epoch;
            s.epoch = s.epoch.max(epoch);
            if from != target {
                s.pending = Some(target);
            }
            raised || from != target
        });
        if from == target {
            return Ok(Outcome {
                status: self.status(),
                changed: false,
            });
        }
        let machine = self.clone();
        let work = tokio::spawn(async move {
            let hook = machine.clone();
            // A second task, so a panicking hook is reported like a failing one.
            let result = tokio::spawn(async move { hook.inner.hook.enter(from, target).await })
                .await
                .unwrap_or_else(|_| Err(HookError("the hook panicked".into())));
            machine.finish(from, target, &result);
            drop(turn);
            result
        });
        let result = work
            .await
            .unwrap_or_else(|_| Err(HookError("the transition task was cancelled".into())));
        match result {
            Ok(()) => Ok(Outcome {
                status: self.status(),
                changed: true,
            }),
            Err(source) => Err(TransitionError::HookFailed {
                name: self.status().name,
                from,
                to: target,
                source,
            }),
        }
    }

    fn check_epoch(&self, requested: u64) -> Result<(), TransitionError> {
        let highest = self.inner.status.borrow().epoch;
        if requested < highest {
            return Err(TransitionError::StaleEpoch { requested, highest });
        }
        Ok(())
    }

    fn finish(&self, from: State, to: State, result: &Result<(), HookError>) {
        self.inner.status.send_modify(|s| {
            s.pending = None;
            match result {
                Ok(()) => {
                    s.state = to;
                    s.transitions += 1;
                    s.state_since_unix_ms = unix_ms();
                    s.health = Health::Ok;
                    s.detail.clear();
                    tracing::info!(resource = %s.name, %from, %to, epoch = s.epoch, "transition done");
                }
                Err(e) => {
                    s.detail = format!("transition {from} -> {to} failed: {e}");
                    tracing::warn!(resource = %s.name, %from, %to, epoch = s.epoch, error = %e, "transition failed");
                }
            }
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
