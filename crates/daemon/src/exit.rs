//! Exit codes: the supervisor's API, mapped in this one place. systemd units
//! set `RestartPreventExitStatus=77 78`: a bad config or a permission problem
//! does not get better by restarting; a runtime fault does.

use std::process::ExitCode;

/// Clean exit.
pub const OK: u8 = 0;
/// A runtime fault: restart me.
pub const RUNTIME: u8 = 1;
/// Permission denied (sysexits EX_NOPERM): don't restart.
pub const NO_PERMISSION: u8 = 77;
/// Bad configuration (sysexits EX_CONFIG): don't restart.
pub const CONFIG: u8 = 78;

/// How a daemon process ended.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The config (file or flags) cannot be used.
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not be opened.
    #[error("listen: {0}")]
    Listen(#[from] crate::listen::ListenError),
    /// Anything that went wrong while running.
    #[error("{0}")]
    Runtime(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn code(&self) -> u8 {
        match self {
            Self::Config(_) => CONFIG,
            Self::Listen(e) if e.is_permission() => NO_PERMISSION,
            Self::Listen(crate::listen::ListenError::NotASocket { .. }) => CONFIG,
            Self::Listen(_) | Self::Runtime(_) => RUNTIME,
        }
    }

    /// The [`ExitCode`] for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}
