//! Commands over `tandem.check.v1`: what checkd sees of each real (health,
//! last result, latency, the reason of the last failure), transitions as
//! they happen, and the operator's override.

use std::fmt::Write as _;
use std::process::ExitCode;

use tandem_proto::check::v1 as pb;
use tandem_proto::check::v1::check_client::CheckClient;
use tandem_proto::ipvs::v1 as ipvs_pb;
use tonic::transport::Channel;

use crate::refused;

use crate::ipvs::{RealsArg, health_name};

/// `tandemctl check …`.
#[derive(clap::Subcommand)]
pub enum CheckCommand {
    /// Every target: health, probe verdict, override, last result.
    List,
    /// Print health transitions as they happen.
    Watch {
        /// Stop after this many transitions.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Force reals up or down whatever their probes say, or clear that.
    Override {
        #[command(flatten)]
        reals: RealsArg,
        /// `up`, `down` or `clear`.
        state: OverrideArg,
    },
}

/// An override as typed.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OverrideArg {
    /// Forced up.
    Up,
    /// Forced down.
    Down,
    /// The probes decide again.
    Clear,
}

/// Runs one `tandemctl check` command.
pub async fn run(channel: Channel, command: CheckCommand) -> anyhow::Result<ExitCode> {
    let mut client = CheckClient::new(channel);
    match command {
        CheckCommand::List => {
            let reply = client
                .list_targets(pb::ListTargetsRequest {})
                .await
                .map_err(refused("ListTargets"))?
                .into_inner();
            print!("{}", render(&reply));
        }
        CheckCommand::Watch { count } => {
            let mut stream = client
                .watch_transitions(pb::WatchTransitionsRequest {})
                .await
                .map_err(refused("WatchTransitions"))?
                .into_inner();
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let Some(t) = stream
                    .message()
                    .await
                    .map_err(refused("WatchTransitions"))?
                else {
                    break;
                };
                println!(
                    "{} {} {} -> {} ({})",
                    t.service_name,
                    key_text(t.key.as_ref()),
                    health_name(t.from()),
                    health_name(t.to()),
                    t.reason
                );
                seen += 1;
            }
        }
        CheckCommand::Override { reals, state } => {
            let r#override = match state {
                OverrideArg::Up => pb::Override::Up,
                OverrideArg::Down => pb::Override::Down,
                OverrideArg::Clear => pb::Override::Unspecified,
            };
            let reply = client
                .set_override(pb::SetOverrideRequest {
                    select: Some(reals.selector()),
                    r#override: r#override.into(),
                })
                .await
                .map_err(refused("SetOverride"))?
                .into_inner();
            for key in &reply.targets {
                println!("{} {}", key_text(Some(key)), override_name(r#override));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn override_name(o: pb::Override) -> &'static str {
    match o {
        pb::Override::Unspecified => "-",
        pb::Override::Up => "forced up",
        pb::Override::Down => "forced down",
    }
}

fn key_text(key: Option<&pb::TargetKey>) -> String {
    let Some(key) = key else {
        return "?".into();
    };
    key.address
        .parse::<std::net::IpAddr>()
        .map(|a| std::net::SocketAddr::new(a, u16::try_from(key.port).unwrap_or(0)).to_string())
        .unwrap_or_else(|_| format!("{}:{}", key.address, key.port))
}

fn check_type(spec: Option<&ipvs_pb::CheckSpec>) -> &'static str {
    match spec.map_or(ipvs_pb::CheckType::Unspecified, |s| s.r#type()) {
        ipvs_pb::CheckType::Unspecified | ipvs_pb::CheckType::Tcp => "tcp",
        ipvs_pb::CheckType::Http => "http",
        ipvs_pb::CheckType::Https => "https",
        ipvs_pb::CheckType::Udp => "udp",
        ipvs_pb::CheckType::Dns => "dns",
        ipvs_pb::CheckType::Icmp => "icmp",
        ipvs_pb::CheckType::External => "external",
        ipvs_pb::CheckType::Off => "off",
        ipvs_pb::CheckType::On => "on",
    }
}

/// The targets as text, one line each.
pub fn render(reply: &pb::ListTargetsResponse) -> String {
    let mut out = String::new();
    let link = if reply.ipvsd_connected {
        "reporting to ipvsd"
    } else {
        "ipvsd unreachable: reports wait"
    };
    let _ = writeln!(out, "{} targets ({link})", reply.targets.len());
    let _ = writeln!(
        out,
        "{:<16} {:<29} {:<8} {:<7} {:<7} {:<11} {:>9}  LAST",
        "SERVICE", "REAL", "TYPE", "HEALTH", "PROBED", "OVERRIDE", "LATENCY"
    );
    for t in &reply.targets {
        let latency = t.last.as_ref().map_or_else(
            || "-".to_owned(),
            |l| format!("{:.1}ms", l.latency_us as f64 / 1000.0),
        );
        let last = match (&t.last, &t.last_failure) {
            (None, _) => "not probed yet".to_owned(),
            (Some(l), _) if !l.ok => format!("failed: {}", l.reason),
            (Some(_), Some(f)) => format!("ok (last failure: {})", f.reason),
            (Some(_), None) => "ok".to_owned(),
        };
        let kind = if t.check.as_ref().is_some_and(|c| c.through_vip) {
            format!("{}+vip", check_type(t.check.as_ref()))
        } else {
            check_type(t.check.as_ref()).to_owned()
        };
        let _ = writeln!(
            out,
            "{:<16} {:<29} {:<8} {:<7} {:<7} {:<11} {:>9}  {last}",
            t.service_name,
            key_text(t.key.as_ref()),
            kind,
            health_name(t.health()),
            health_name(t.probed_health()),
            override_name(t.r#override()),
            latency,
        );
    }
    out
}
