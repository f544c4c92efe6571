//! The `checkd` process: flags, then the shared daemon lifecycle over [`tandem_checkd::Checkd`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tandem_checkd::config::CheckdConfig;

/// checkd: probes real servers and reports their health to ipvsd.
#[derive(Parser)]
#[command(name = "checkd", version)]
struct Cli {
    #[command(flatten)]
    common: tandem_daemon::CommonFlags,
    /// ipvsd's gRPC socket: where the targets come from and reports go.
    #[arg(long, value_name = "PATH")]
    ipvsd_socket: Option<PathBuf>,
    /// ldirectord's maintenancedir: a file named ADDRESS or ADDRESS:PORT
    /// here forces that real down.
    #[arg(long, value_name = "DIR")]
    maintenance_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = tandem_checkd::drop_ambient_capabilities() {
        eprintln!("checkd: dropping ambient capabilities (external checks would get them): {e}");
    }
    let (socket, maintenance) = (cli.ipvsd_socket, cli.maintenance_dir);
    let own = Arc::new(move |config: &mut CheckdConfig| {
        if let Some(socket) = &socket {
            config.ipvsd_socket.clone_from(socket);
        }
        if let Some(dir) = &maintenance {
            config.maintenance_dir = Some(dir.clone());
        }
    });
    tandem_daemon::main_with::<tandem_checkd::Checkd>(&cli.common, own)
}
