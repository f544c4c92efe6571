//! The resource state machine behind `tandem.resource.v1`.
//!
//! Every resource daemon (vipd, ipvsd, checkd, or a third-party daemon)
//! embeds a [`ResourceMachine`] and implements [`ResourceHook`] to do its real
//! work; [`ResourceService`] serves the machine over gRPC. The machine owns
//! the contract's rules — idempotent transitions, epoch fencing, one
//! transition at a time, a failed hook leaves the previous state — so no
//! daemon re-implements them. It never decides a role: that is hbd's job.

mod grpc;
mod machine;
mod state;

pub use grpc::ResourceService;
pub use machine::{Outcome, ResourceMachine, TransitionError};
pub use state::{Health, HookError, ResourceHook, State, StateOnly, Status};
