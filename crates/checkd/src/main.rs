//! The `checkd` process: flags, then the shared daemon lifecycle over [`tandem_checkd::Checkd`].

use std::process::ExitCode;

use clap::Parser;

/// checkd: probes real servers and reports their health to ipvsd.
#[derive(Parser)]
#[command(name = "checkd", version)]
struct Cli {
    #[command(flatten)]
    common: tandem_daemon::CommonFlags,
}

fn main() -> ExitCode {
    tandem_daemon::main::<tandem_checkd::Checkd>(&Cli::parse().common)
}
