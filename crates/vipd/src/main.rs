//! The `vipd` process: flags, then the shared daemon lifecycle over [`tandem_vipd::Vipd`].

use std::process::ExitCode;

use clap::Parser;

/// vipd: virtual addresses and neighbour announcements (gratuitous ARP/NA) on this host.
#[derive(Parser)]
#[command(name = "vipd", version)]
struct Cli {
    #[command(flatten)]
    common: tandem_daemon::CommonFlags,
}

fn main() -> ExitCode {
    tandem_daemon::main::<tandem_vipd::Vipd>(&Cli::parse().common)
}
