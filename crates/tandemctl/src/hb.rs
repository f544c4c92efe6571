//! Commands over `tandem.hb.v1`: the cluster as hbd sees it (`cl_status`),
//! giving the group up or taking it (`hb_standby`, `hb_takeover`), and the
//! event stream.

use std::fmt::Write as _;
use std::process::ExitCode;

use tandem_proto::hb::v1 as pb;
use tandem_proto::hb::v1::membership_client::MembershipClient;
use tonic::transport::Channel;

use crate::refused;

/// `tandemctl hb …`.
#[derive(clap::Subcommand)]
pub enum HbCommand {
    /// Every node: alive, role, epoch, score, links; and the resource group.
    Status,
    /// Give the group up to a live peer (like hb_standby).
    Standby,
    /// Take the group (like hb_takeover).
    Takeover,
    /// Print membership and role events as they happen.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// Runs one `tandemctl hb` command.
pub async fn run(channel: Channel, command: HbCommand) -> anyhow::Result<ExitCode> {
    let mut client = MembershipClient::new(channel);
    let cluster = match command {
        HbCommand::Status => client
            .get_cluster(pb::GetClusterRequest {})
            .await
            .map_err(refused("GetCluster"))?,
        HbCommand::Standby => client
            .standby(pb::StandbyRequest {})
            .await
            .map_err(refused("Standby"))?,
        HbCommand::Takeover => client
            .takeover(pb::TakeoverRequest {})
            .await
            .map_err(refused("Takeover"))?,
        HbCommand::Events { count } => {
            let mut stream = client
                .watch_events(pb::WatchEventsRequest {})
                .await
                .map_err(refused("WatchEvents"))?
                .into_inner();
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                let Some(event) = stream.message().await.map_err(refused("WatchEvents"))? else {
                    break;
                };
                println!("{}", render_event(&event));
                seen += 1;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    print!("{}", render(&cluster.into_inner()));
    Ok(ExitCode::SUCCESS)
}

fn role(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Active) => "ACTIVE",
        Ok(pb::Role::Standby) => "STANDBY",
        _ => "-",
    }
}

fn render(c: &pb::Cluster) -> String {
    let mut out = String::new();
    let owner = if c.owner.is_empty() {
        "(none yet)"
    } else {
        &c.owner
    };
    let _ = writeln!(
        out,
        "cluster {}  node {}  owner {}  epoch {}",
        c.cluster, c.node, owner, c.epoch
    );
    let _ = writeln!(
        out,
        "{:<16} {:<6} {:<8} {:>5} {:>5} {:>5} {:>9}  LINKS / NOTES",
        "NODE", "ALIVE", "ROLE", "TERM", "PRIO", "SCORE", "HEARD"
    );
    for n in &c.nodes {
        let heard = match n.last_heard_ms {
            _ if n.local => "local".to_owned(),
            Some(ms) => format!("{ms}ms"),
            None => "never".to_owned(),
        };
        let mut notes = n.links.join(", ");
        for (flag, note) in [
            (n.failed, "group failed"),
            (!n.eligible && n.alive, "not eligible"),
            (n.preference > 0, "takeover requested"),
            (n.preference < 0, "standby requested"),
        ] {
            if flag {
                if !notes.is_empty() {
                    notes.push_str("; ");
                }
                notes.push_str(note);
            }
        }
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:<8} {:>5} {:>5} {:>5} {:>9}  {}",
            n.name,
            if n.alive { "yes" } else { "no" },
            role(n.role),
            n.term,
            n.priority,
            n.score,
            heard,
            notes
        );
    }
    if !c.ping.is_empty() {
        let targets = c
            .ping
            .iter()
            .map(|t| format!("{} {}", t.name, if t.up { "up" } else { "down" }))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "ping: {targets}");
    }
    if !c.resources.is_empty() {
        let _ = writeln!(out, "{:<16} {:<8} DETAIL", "RESOURCE", "STATE");
        for r in &c.resources {
            let _ = writeln!(out, "{:<16} {:<8} {}", r.name, r.state, r.detail);
        }
    }
    out
}

fn render_event(e: &pb::Event) -> String {
    let kind = pb::EventKind::try_from(e.kind)
        .map_or("UNKNOWN", |k| k.as_str_name())
        .trim_start_matches("EVENT_KIND_");
    format!(
        "{} {:<14} node={} role={} epoch={} {}",
        e.unix_ms,
        kind,
        e.node,
        role(e.role),
        e.epoch,
        e.detail
    )
    .trim_end()
    .to_owned()
}
