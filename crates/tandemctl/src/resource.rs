//! Commands over `tandem.resource.v1` and `grpc.health.v1`.

use std::process::ExitCode;

use anyhow::Context;
use tandem_proto::resource::v1 as pb;
use tandem_proto::resource::v1::resource_client::ResourceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A state to move a resource to.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    /// Not prepared, not serving.
    Stopped,
    /// Prepared and warm, not serving.
    Standby,
    /// Serving.
    Active,
}

impl From<StateArg> for pb::State {
    fn from(arg: StateArg) -> Self {
        match arg {
            StateArg::Stopped => Self::Stopped,
            StateArg::Standby => Self::Standby,
            StateArg::Active => Self::Active,
        }
    }
}

fn name(state: pb::State) -> &'static str {
    match state {
        pb::State::Unspecified => "-",
        pb::State::Stopped => "STOPPED",
        pb::State::Standby => "STANDBY",
        pb::State::Active => "ACTIVE",
    }
}

fn health_name(health: pb::Health) -> &'static str {
    match health {
        pb::Health::Unspecified => "UNKNOWN",
        pb::Health::Ok => "OK",
        pb::Health::Degraded => "DEGRADED",
        pb::Health::Failed => "FAILED",
    }
}

/// One line per status: the fields an operator scans for.
fn line(s: &pb::ResourceStatus) -> String {
    let mut out = format!(
        "{} {} epoch={} health={} transitions={}",
        s.name,
        name(s.state()),
        s.epoch,
        health_name(s.health()),
        s.transitions
    );
    if s.pending() != pb::State::Unspecified {
        out.push_str(&format!(" pending={}", name(s.pending())));
    }
    if !s.detail.is_empty() {
        out.push_str(&format!(" detail={:?}", s.detail));
    }
    out
}

/// `tandemctl status`.
pub async fn status(channel: Channel) -> anyhow::Result<ExitCode> {
    let status = ResourceClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await
        .context("GetStatus")?
        .into_inner();
    println!("{}", line(&status));
    Ok(ExitCode::SUCCESS)
}

/// `tandemctl transition STATE --epoch N`.
pub async fn transition(channel: Channel, state: StateArg, epoch: u64) -> anyhow::Result<ExitCode> {
    let request = pb::TransitionRequest {
        target: pb::State::from(state).into(),
        epoch,
    };
    let reply = ResourceClient::new(channel)
        .transition(request)
        .await
        .map_err(crate::refused("Transition"))?
        .into_inner();
    let status = reply.status.unwrap_or_default();
    let what = if reply.changed {
        "changed"
    } else {
        "unchanged"
    };
    println!("{} ({what})", line(&status));
    Ok(ExitCode::SUCCESS)
}

/// `tandemctl watch [--count N]`.
pub async fn watch(channel: Channel, count: Option<usize>) -> anyhow::Result<ExitCode> {
    let mut stream = ResourceClient::new(channel)
        .watch_status(pb::WatchStatusRequest {})
        .await
        .context("WatchStatus")?
        .into_inner();
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        match stream.message().await.context("WatchStatus stream")? {
            Some(status) => println!("{}", line(&status)),
            None => break,
        }
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// `tandemctl health [SERVICE]`.
pub async fn health(channel: Channel, service: String) -> anyhow::Result<ExitCode> {
    let reply = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.clone(),
        })
        .await
        .context("grpc.health.v1 Check")?
        .into_inner();
    let status = reply.status();
    let shown = if service.is_empty() {
        "(daemon)"
    } else {
        service.as_str()
    };
    println!("{shown}: {}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
