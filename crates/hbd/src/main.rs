//! The `hbd` process: flags, then the shared daemon lifecycle over [`tandem_hbd::Hbd`].

use std::process::ExitCode;

use clap::Parser;

/// hbd: cluster membership and failover; the only daemon that decides ACTIVE or STANDBY.
#[derive(Parser)]
#[command(name = "hbd", version)]
struct Cli {
    #[command(flatten)]
    common: tandem_daemon::CommonFlags,
}

fn main() -> ExitCode {
    tandem_daemon::main::<tandem_hbd::Hbd>(&Cli::parse().common)
}
