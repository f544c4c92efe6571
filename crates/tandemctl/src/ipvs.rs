//! Commands over `tandem.ipvs.v1`: the table as `ipvsadm -Ln` shows it plus
//! what ipvsadm cannot (health, drains, effective weights), drains, applying
//! a file, exporting rules.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use tandem_ipvsd::api::convert;
use tandem_ipvsd::config::IpvsdConfig;
use tandem_proto::ipvs::v1 as pb;
use tandem_proto::ipvs::v1::ipvs_client::IpvsClient;
use tonic::transport::Channel;

use crate::refused;

/// `tandemctl ipvs …`.
#[derive(clap::Subcommand)]
pub enum IpvsCommand {
    /// The table with health, drains, effective weights and connections.
    List,
    /// Drain reals: weight 0, wait for their connections, optionally remove.
    Drain {
        #[command(flatten)]
        reals: RealsArg,
        /// Give up waiting for connections after this long (e.g. 90s, 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        /// Remove the reals from the table once drained.
        #[arg(long)]
        remove: bool,
        /// Return only when the drain has finished.
        #[arg(long)]
        wait: bool,
    },
    /// End a drain: the reals get their weight back.
    Undrain {
        #[command(flatten)]
        reals: RealsArg,
    },
    /// Replace the whole table with a file's: ipvsd's YAML (its
    /// `virtual_services`) or, with --rules, `ipvsadm-save -n` text.
    Apply {
        /// The file.
        file: PathBuf,
        /// The file is in the ipvsadm rule format.
        #[arg(long)]
        rules: bool,
        /// Only print the plan of kernel operations.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the table in the `ipvsadm-save -n` format.
    Export {
        /// What the kernel holds instead of the desired table.
        #[arg(long)]
        kernel: bool,
    },
}

/// Which reals: an address, optionally a port and a service.
#[derive(clap::Args)]
pub struct RealsArg {
    /// The reals' address.
    address: String,
    /// Only this port.
    #[arg(long)]
    port: Option<u32>,
    /// Only in this service: `tcp:ADDR:PORT`, `udp:…`, `sctp:…` or
    /// `fwmark:N[:ipv6]` (IPv6 addresses in brackets).
    #[arg(long, value_parser = parse_service)]
    service: Option<pb::ServiceKey>,
}

impl RealsArg {
    pub fn selector(self) -> pb::RealSelector {
        pb::RealSelector {
            address: self.address,
            port: self.port,
            service: self.service,
        }
    }
}

/// Parses `tcp:198.51.100.10:80`, `udp:[2001:db8::1]:53`, `fwmark:7:ipv6`.
fn parse_service(text: &str) -> Result<pb::ServiceKey, String> {
    let (kind, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected PROTO:ADDR:PORT or fwmark:N"))?;
    if kind == "fwmark" {
        let (mark, family) = match rest.split_once(':') {
            Some((mark, "ipv6")) => (mark, pb::Family::Ipv6),
            Some((mark, "ipv4")) | Some((mark, "")) => (mark, pb::Family::Ipv4),
            Some((_, other)) => return Err(format!("`{other}`: expected ipv4 or ipv6")),
            None => (rest, pb::Family::Ipv4),
        };
        return Ok(pb::ServiceKey {
            fwmark: mark
                .parse()
                .map_err(|_| format!("`{mark}` is not a mark"))?,
            family: family.into(),
            ..pb::ServiceKey::default()
        });
    }
    let protocol = match kind {
        "tcp" => pb::Protocol::Tcp,
        "udp" => pb::Protocol::Udp,
        "sctp" => pb::Protocol::Sctp,
        other => return Err(format!("`{other}`: expected tcp, udp, sctp or fwmark")),
    };
    let addr: std::net::SocketAddr = rest
        .parse()
        .map_err(|_| format!("`{rest}` is not ADDR:PORT"))?;
    Ok(pb::ServiceKey {
        protocol: protocol.into(),
        address: addr.ip().to_string(),
        port: addr.port().into(),
        ..pb::ServiceKey::default()
    })
}

/// Runs one `tandemctl ipvs` command.
pub async fn run(channel: Channel, command: IpvsCommand) -> anyhow::Result<ExitCode> {
    let mut client = IpvsClient::new(channel);
    match command {
        IpvsCommand::List => {
            let table = client
                .list_services(pb::ListServicesRequest {})
                .await
                .map_err(refused("ListServices"))?
                .into_inner();
            print!("{}", render(&table));
        }
        IpvsCommand::Drain {
            reals,
            timeout,
            remove,
            wait,
        } => {
            let request = pb::DrainRequest {
                reals: Some(reals.selector()),
                timeout_ms: timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
                remove,
                wait,
            };
            let reply = client
                .drain(request)
                .await
                .map_err(refused("Drain"))?
                .into_inner();
            print!("{}", render_drained(&reply));
        }
        IpvsCommand::Undrain { reals } => {
            let reply = client
                .undrain(pb::UndrainRequest {
                    reals: Some(reals.selector()),
                })
                .await
                .map_err(refused("Undrain"))?
                .into_inner();
            print!("{}", render_drained(&reply));
        }
        IpvsCommand::Apply {
            file,
            rules,
            dry_run,
        } => {
            let table = read_table(&file, rules)?;
            let reply = client
                .apply(pb::ApplyRequest {
                    table: Some(table),
                    dry_run,
                })
                .await
                .map_err(refused("Apply"))?
                .into_inner();
            for op in &reply.plan {
                println!("{op}");
            }
            let what = if reply.applied { "applied" } else { "dry run" };
            println!(
                "{what}: {} operations, table version {}",
                reply.plan.len(),
                reply.version
            );
        }
        IpvsCommand::Export { kernel } => {
            let reply = client
                .export_rules(pb::ExportRulesRequest { kernel })
                .await
                .map_err(refused("ExportRules"))?
                .into_inner();
            print!("{}", reply.rules);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_table(file: &PathBuf, rules: bool) -> anyhow::Result<pb::apply_request::Table> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if rules {
        return Ok(pb::apply_request::Table::IpvsadmRules(text));
    }
    let config: IpvsdConfig = tandem_daemon::config::parse(file, &text)?;
    let origin = file.display().to_string();
    if let Err(e) = tandem_daemon::DaemonConfig::validate(&config, &origin) {
        bail!(e);
    }
    Ok(pb::apply_request::Table::Services(pb::ServiceList {
        services: config
            .virtual_services
            .iter()
            .map(convert::virtual_service_to_wire)
            .collect(),
    }))
}

fn forward_name(forward: pb::Forward, default: pb::Forward) -> &'static str {
    match if forward == pb::Forward::Unspecified {
        default
    } else {
        forward
    } {
        pb::Forward::Masq => "Masq",
        pb::Forward::Tunnel => "Tunnel",
        pb::Forward::Route | pb::Forward::Unspecified => "Route",
    }
}

/// A real's health as `list` shows it.
pub fn health_name(health: pb::Health) -> &'static str {
    match health {
        pb::Health::Unspecified => "unknown",
        pb::Health::Up => "up",
        pb::Health::Down => "down",
    }
}

/// The table as text: ipvsadm -Ln's layout with tandem's columns.
pub fn render(table: &pb::ListServicesResponse) -> String {
    let mut out = String::new();
    let state = if table.serving {
        match &table.sync {
            Some(sync) if !sync.role.is_empty() => format!(
                "in the kernel; sync {}, {} connections",
                sync.role, sync.connections
            ),
            _ => "in the kernel".into(),
        }
    } else {
        "not in the kernel (STOPPED)".into()
    };
    let _ = writeln!(out, "table version {} ({state})", table.version);
    let _ = writeln!(
        out,
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight Eff   Health  Drain    ActiveConn InActConn"
    );
    for s in &table.services {
        let vs = s.service.clone().unwrap_or_default();
        let mut flags = vs.scheduler_flags.join(",");
        if let Some(p) = &vs.persistence {
            let _ = write!(flags, " persistent {}", p.timeout_s);
        }
        let fallback = if s.fallback_active {
            " (fallback active)"
        } else {
            ""
        };
        let _ = writeln!(out, "{} {} {flags}{fallback}", s.key, vs.scheduler);
        for r in &s.reals {
            let real = r.real.clone().unwrap_or_default();
            let addr: std::net::IpAddr = real
                .address
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            let target = std::net::SocketAddr::new(addr, u16::try_from(r.port).unwrap_or(0));
            let eff = r
                .effective_weight
                .map_or_else(|| "-".into(), |w| w.to_string());
            let health = health_name(r.health());
            let drain = match r.drain() {
                pb::DrainState::Unspecified => "-",
                pb::DrainState::Draining => "draining",
                pb::DrainState::Drained => "drained",
            };
            let (active, inactive) = r.counters.as_ref().map_or_else(
                || ("-".to_string(), "-".to_string()),
                |c| (c.active_conns.to_string(), c.inactive_conns.to_string()),
            );
            let _ = write!(
                out,
                "  -> {:<29} {:<7} {:<6} {:<5} {:<7} {:<8} {:<10} {}",
                target.to_string(),
                forward_name(real.forward(), vs.forward()),
                real.weight.unwrap_or(1),
                eff,
                health,
                drain,
                active,
                inactive
            );
            if !r.health_detail.is_empty() {
                let _ = write!(out, "  ({})", r.health_detail);
            }
            out.push('\n');
        }
    }
    out
}

fn render_drained(reply: &pb::DrainResponse) -> String {
    let mut out = String::new();
    for r in &reply.reals {
        let state = match (r.removed, r.drain()) {
            (true, _) => "removed",
            (false, pb::DrainState::Draining) => "draining",
            (false, pb::DrainState::Drained) => "drained",
            (false, pb::DrainState::Unspecified) => "in service",
        };
        let timed_out = if r.timed_out { " (timed out)" } else { "" };
        let _ = writeln!(
            out,
            "{} {}:{} {state}{timed_out}, {} active connections",
            r.service, r.address, r.port, r.active_conns
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_parse_as_written() {
        let tcp = parse_service("tcp:198.51.100.10:80").unwrap();
        assert_eq!((tcp.address.as_str(), tcp.port), ("198.51.100.10", 80));
        let udp6 = parse_service("udp:[2001:db8::1]:53").unwrap();
        assert_eq!(udp6.protocol(), pb::Protocol::Udp);
        assert_eq!(udp6.address, "2001:db8::1");
        let mark = parse_service("fwmark:7:ipv6").unwrap();
        assert_eq!((mark.fwmark, mark.family()), (7, pb::Family::Ipv6));
        assert!(parse_service("icmp:198.51.100.10:80").is_err());
        assert!(parse_service("tcp:198.51.100.10").is_err());
    }
}
