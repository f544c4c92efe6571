//! Plumbing shared by tandem's daemons, so each daemon's `main` only does
//! process setup and its library holds only its own logic.
//!
//! What lives here: common CLI flags ([`CommonFlags`]), YAML config loading
//! with errors that name file, line, column and field ([`config`]), logging,
//! gRPC serving on a Unix socket and optionally on TCP with mutual TLS, with
//! `grpc.health.v1` and server reflection on every daemon ([`grpc`]), a
//! Prometheus `/metrics` endpoint ([`metrics`]), systemd notification,
//! SIGTERM/SIGHUP handling and the exit codes systemd acts on ([`exit`]).
//! Nothing here knows what a daemon does.

pub mod client;
pub mod config;
pub mod exit;
pub mod flags;
pub mod grpc;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod runner;
pub mod systemd;

pub use config::{BareConfig, ConfigError, DaemonConfig, DaemonSettings};
pub use flags::CommonFlags;
pub use runner::{Daemon, OwnFlags, Services, main, main_with};
