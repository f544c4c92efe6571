//! Domain types of the resource contract, separate from their wire form in
//! `tandem_proto::resource::v1`, and the hook a daemon implements.

use std::fmt;
use std::future::Future;

use tandem_proto::resource::v1 as pb;

/// A resource's state (see `tandem.resource.v1.State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not prepared and not serving; the state at daemon start.
    Stopped,
    /// Prepared and warm, not serving.
    Standby,
    /// Serving.
    Active,
}

impl State {
    /// Parses a wire value; `None` for `STATE_UNSPECIFIED` or an unknown value.
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::State::try_from(value).ok()? {
            pb::State::Unspecified => None,
            pb::State::Stopped => Some(Self::Stopped),
            pb::State::Standby => Some(Self::Standby),
            pb::State::Active => Some(Self::Active),
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> pb::State {
        match self {
            Self::Stopped => pb::State::Stopped,
            Self::Standby => pb::State::Standby,
            Self::Active => pb::State::Active,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stopped => "STOPPED",
            Self::Standby => "STANDBY",
            Self::Active => "ACTIVE",
        })
    }
}

/// How well a resource is doing in its current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not yet known.
    Unknown,
    /// Doing what its state promises.
    Ok,
    /// Serving, with a problem worth an operator's attention.
    Degraded,
    /// Not doing what its state promises; hbd gives the group up.
    Failed,
}

impl Health {
    /// The wire value.
    pub fn to_wire(self) -> pb::Health {
        match self {
            Self::Unknown => pb::Health::Unspecified,
            Self::Ok => pb::Health::Ok,
            Self::Degraded => pb::Health::Degraded,
            Self::Failed => pb::Health::Failed,
        }
    }
}

/// A resource's status, as reported by `GetStatus` and `WatchStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The resource's name.
    pub name: String,
    /// The state reached by the last successful transition.
    pub state: State,
    /// The highest epoch accepted; 0 until one is.
    pub epoch: u64,
    /// Health in the current state.
    pub health: Health,
    /// Why health is not OK, or what the last failed transition said.
    pub detail: String,
    /// Where a running transition is heading; `None` when idle.
    pub pending: Option<State>,
    /// Transitions that changed state since start.
    pub transitions: u64,
    /// Wall-clock time of the last change of state (ms since the Unix epoch); 0 if none.
    pub state_since_unix_ms: u64,
}

impl Status {
    /// The wire form.
    pub fn to_wire(&self) -> pb::ResourceStatus {
        pb::ResourceStatus {
            name: self.name.clone(),
            state: self.state.to_wire().into(),
            epoch: self.epoch,
            health: self.health.to_wire().into(),
            detail: self.detail.clone(),
            pending: self
                .pending
                .map_or(pb::State::Unspecified, State::to_wire)
                .into(),
            transitions: self.transitions,
            state_since_unix_ms: self.state_since_unix_ms,
        }
    }
}

/// Why a hook could not move its resource; the text reaches the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// The real work of a resource daemon, called by [`crate::ResourceMachine`].
///
/// The machine calls `enter` once per state change, never concurrently, and
/// only when `from != to`. A hook that fails must leave the host as it was in
/// `from` (undo what it did): the machine then stays in `from`.
pub trait ResourceHook: Send + Sync + 'static {
    /// Moves the resource from `from` to `to`.
    fn enter(&self, from: State, to: State) -> impl Future<Output = Result<(), HookError>> + Send;
}

/// A hook with no work to do: transitions only record the state. For a
/// resource whose host-side work is not built yet, and for tests of callers.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateOnly;

impl ResourceHook for StateOnly {
    async fn enter(&self, _from: State, _to: State) -> Result<(), HookError> {
        Ok(())
    }
}
