//! The `ipvsd` process: flags, then the shared daemon lifecycle over [`tandem_ipvsd::Ipvsd`].

use std::process::ExitCode;

use clap::Parser;

/// ipvsd: owns the desired IPVS service table and reconciles the kernel to it.
#[derive(Parser)]
#[command(name = "ipvsd", version)]
struct Cli {
    #[command(flatten)]
    common: tandem_daemon::CommonFlags,
}

fn main() -> ExitCode {
    tandem_daemon::main::<tandem_ipvsd::Ipvsd>(&Cli::parse().common)
}
