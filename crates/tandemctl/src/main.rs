//! tandemctl: the operator CLI over the daemons' gRPC APIs (what
//! `cl_status`, `hb_standby` and `ipvsadm -L` were to the old stack).
//! It only talks gRPC; it never changes the host itself.

mod check;
mod hb;
mod ipvs;
mod resource;
mod target;
mod vip;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Operate tandem's daemons over gRPC.
#[derive(Parser)]
#[command(name = "tandemctl", version)]
struct Cli {
    #[command(flatten)]
    target: target::TargetFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a resource daemon's state, epoch and health.
    Status,
    /// Move a resource daemon to a state under an ownership epoch.
    Transition {
        /// The state to reach.
        state: resource::StateArg,
        /// The ownership epoch (hbd's term); lower than the highest seen is refused.
        #[arg(long)]
        epoch: u64,
    },
    /// Print the resource's status now and on every change.
    Watch {
        /// Stop after this many updates.
        #[arg(long)]
        count: Option<usize>,
    },
    /// ipvsd's table (the daemon defaults to ipvsd).
    Ipvs {
        #[command(subcommand)]
        command: ipvs::IpvsCommand,
    },
    /// checkd's probes (the daemon defaults to checkd).
    Check {
        #[command(subcommand)]
        command: check::CheckCommand,
    },
    /// hbd's cluster view, standby and takeover (the daemon defaults to hbd).
    Hb {
        #[command(subcommand)]
        command: hb::HbCommand,
    },
    /// vipd's addresses (the daemon defaults to vipd).
    Vip {
        #[command(subcommand)]
        command: vip::VipCommand,
    },
    /// Ask the daemon's grpc.health.v1 service; exits 1 unless SERVING.
    Health {
        /// Service to ask about; empty for the daemon as a whole.
        #[arg(default_value = "")]
        service: String,
    },
}

/// Turns a refused call into an error naming the call, the code and why.
fn refused(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!("{what} refused ({:?}): {}", s.code(), s.message())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tandemctl: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandemctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let default_daemon = match cli.command {
        Command::Ipvs { .. } => "ipvsd",
        Command::Check { .. } => "checkd",
        Command::Vip { .. } => "vipd",
        _ => "hbd",
    };
    let channel = cli.target.connect(default_daemon).await?;
    match cli.command {
        Command::Ipvs { command } => ipvs::run(channel, command).await,
        Command::Check { command } => check::run(channel, command).await,
        Command::Vip { command } => vip::run(channel, command).await,
        Command::Hb { command } => hb::run(channel, command).await,
        Command::Status => resource::status(channel).await,
        Command::Transition { state, epoch } => resource::transition(channel, state, epoch).await,
        Command::Watch { count } => resource::watch(channel, count).await,
        Command::Health { service } => resource::health(channel, service).await,
    }
}
