//! The link to ipvsd: its `Watch` stream gives the targets, `ReportHealth`
//! takes the transitions. When ipvsd goes away, probing goes on with the
//! last table; checkd reconnects with backoff (100ms, doubling, up to
//! `reconnect_max`) and, once back, reports every target's health again,
//! so nothing decided while it was away is lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_daemon::client::connect_unix;
use tandem_ipvsd::api::convert;
use tandem_ipvsd::effective::RealId;
use tandem_proto::ipvs::v1 as pb;
use tandem_proto::ipvs::v1::ipvs_client::IpvsClient;
use tandem_resource::{Health as ResourceHealth, ResourceMachine, StateOnly};
use tonic::transport::Channel;

use crate::engine::{Engine, Report};
use crate::target::{Target, targets_of};

/// First wait before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Keeps the link up for as long as the daemon runs.
pub async fn run(
    engine: Engine,
    socket: PathBuf,
    reconnect_max: Duration,
    machine: ResourceMachine<StateOnly>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    loop {
        let ended = match connect_unix(&socket).await {
            Ok(channel) => session(&engine, channel, &socket, &machine, &mut backoff).await,
            Err(e) => e.to_string(),
        };
        // Warn once per outage, not at every retry.
        if engine.connected() || !warned {
            tracing::warn!(socket = %socket.display(), error = %ended, "ipvsd unreachable; probing goes on, reconnecting");
            warned = true;
        }
        engine.set_connected(false);
        let targets = engine.targets().len();
        machine.set_health(
            ResourceHealth::Degraded,
            format!("ipvsd unreachable ({ended}); probing {targets} targets of its last table"),
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(reconnect_max);
    }
}

/// One connection: follow the table, deliver reports, until either fails.
/// Returns why it ended.
async fn session(
    engine: &Engine,
    channel: Channel,
    socket: &Path,
    machine: &ResourceMachine<StateOnly>,
    backoff: &mut Duration,
) -> String {
    let mut client = IpvsClient::new(channel);
    let mut stream = match client.watch(pb::WatchRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return format!("Watch: {}", status.message()),
    };
    let mut announced = false;
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(snapshot)) => {
                    let targets = targets_of_snapshot(&snapshot);
                    let count = targets.len();
                    engine.update(targets);
                    if !announced {
                        announced = true;
                        *backoff = FIRST_BACKOFF;
                        engine.set_connected(true);
                        engine.requeue_all();
                        tracing::info!(socket = %socket.display(), targets = count, "following ipvsd's table");
                    }
                    machine.set_health(
                        ResourceHealth::Ok,
                        format!("probing {count} targets of ipvsd's table version {}", snapshot.version),
                    );
                }
                Ok(None) => return "ipvsd ended the Watch stream".into(),
                Err(status) => return format!("Watch: {}", status.message()),
            },
            () = engine.reports_pending(), if announced => {
                let reports = engine.take_reports();
                if reports.is_empty() {
                    continue;
                }
                if let Err(status) = deliver(&mut client, &reports).await {
                    engine.requeue(&reports);
                    return format!("ReportHealth: {}", status.message());
                }
            }
        }
    }
}

async fn deliver(
    client: &mut IpvsClient<Channel>,
    reports: &[Report],
) -> Result<(), tonic::Status> {
    let request = pb::ReportHealthRequest {
        reports: reports.iter().map(report_to_wire).collect(),
    };
    let response = client.report_health(request).await?.into_inner();
    if !response.unknown.is_empty() {
        tracing::debug!(unknown = ?response.unknown, "ipvsd no longer has these reals");
    }
    Ok(())
}

fn report_to_wire(report: &Report) -> pb::HealthReport {
    pb::HealthReport {
        service: Some(convert::service_key_to_wire(report.key.service)),
        address: report.key.address.to_string(),
        port: u32::from(report.key.port),
        health: convert::health_to_wire(report.health).into(),
        detail: report.detail.clone(),
    }
}

/// The targets of a `Watch` snapshot; a service ipvsd sent but checkd
/// cannot read is logged and skipped (the rest are still probed).
fn targets_of_snapshot(snapshot: &pb::TableSnapshot) -> Vec<Target> {
    let services: Vec<_> = snapshot
        .services
        .iter()
        .enumerate()
        .filter_map(|(i, vs)| match convert::virtual_service(vs) {
            Ok(vs) => Some(vs),
            Err(e) => {
                tracing::error!(index = i, field = %e.field, error = %e.message, "unreadable service in ipvsd's table; not probed");
                None
            }
        })
        .collect();
    targets_of(&services, &probe_marks_of_snapshot(snapshot))
}

/// The probe marks of a `Watch` snapshot; an unreadable one is logged and
/// skipped (its target then says it cannot be probed).
fn probe_marks_of_snapshot(snapshot: &pb::TableSnapshot) -> BTreeMap<RealId, u32> {
    snapshot
        .probe_marks
        .iter()
        .filter_map(|m| {
            let read = || -> Result<RealId, tandem_ipvsd::field::FieldError> {
                let service = convert::required_key("service", m.service.as_ref())?;
                let address = convert::address("address", &m.address)?;
                let port = convert::port("port", m.port)?;
                Ok((service, address, port))
            };
            match read() {
                Ok(id) => Some((id, m.mark)),
                Err(error) => {
                    tracing::error!(%error, mark = m.mark, "unreadable probe mark in ipvsd's table; skipped");
                    None
                }
            }
        })
        .collect()
}
