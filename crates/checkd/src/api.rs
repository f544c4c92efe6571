//! [`CheckService`]: `tandem.check.v1.Check` over the engine: the targets
//! and what their probes found, a stream of transitions, and the
//! operator's override.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_ipvsd::api::convert;
use tandem_ipvsd::effective::Health;
use tandem_proto::check::v1 as pb;
use tandem_proto::check::v1::check_server::{Check, CheckServer};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, OverrideSource, ProbeRecord, TargetView, Transition};
use crate::target::TargetKey;

/// The gRPC face of the engine.
pub struct CheckService {
    engine: Engine,
    shutdown: CancellationToken,
}

impl CheckService {
    /// A service over `engine`; streams end when `shutdown` is cancelled.
    pub fn new(engine: Engine, shutdown: CancellationToken) -> Self {
        Self { engine, shutdown }
    }

    /// The tonic server.
    pub fn into_server(self) -> CheckServer<Self> {
        CheckServer::new(self).max_encoding_message_size(64 << 20)
    }
}

type TransitionStream = Pin<Box<dyn Stream<Item = Result<pb::Transition, Status>> + Send>>;

#[tonic::async_trait]
impl Check for CheckService {
    async fn list_targets(
        &self,
        _request: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        Ok(Response::new(pb::ListTargetsResponse {
            targets: self.engine.targets().iter().map(target_to_wire).collect(),
            ipvsd_connected: self.engine.connected(),
        }))
    }

    type WatchTransitionsStream = TransitionStream;

    async fn watch_transitions(
        &self,
        _request: Request<pb::WatchTransitionsRequest>,
    ) -> Result<Response<Self::WatchTransitionsStream>, Status> {
        let transitions = BroadcastStream::new(self.engine.subscribe()).map(|t| match t {
            Ok(t) => Ok(transition_to_wire(&t)),
            Err(BroadcastStreamRecvError::Lagged(n)) => Err(Status::data_loss(format!(
                "this watcher fell {n} transitions behind; call ListTargets and watch again"
            ))),
        });
        let stream = futures_util::StreamExt::take_until(
            transitions,
            self.shutdown.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_override(
        &self,
        request: Request<pb::SetOverrideRequest>,
    ) -> Result<Response<pb::SetOverrideResponse>, Status> {
        let request = request.into_inner();
        let select = convert::selector("select", request.select.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let health = match pb::Override::try_from(request.r#override) {
            Ok(pb::Override::Unspecified) => None,
            Ok(pb::Override::Up) => Some(Health::Up),
            Ok(pb::Override::Down) => Some(Health::Down),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "override: {} is not an Override",
                    request.r#override
                )));
            }
        };
        let keys = self.engine.set_override(
            |k| {
                k.address == select.address
                    && select.port.is_none_or(|p| p == k.port)
                    && select.service.is_none_or(|s| s == k.service)
            },
            health,
        );
        if keys.is_empty() {
            return Err(Status::not_found(format!(
                "no target matches {}{}",
                select.address,
                select
                    .port
                    .map(|p| format!(" port {p}"))
                    .unwrap_or_default()
            )));
        }
        Ok(Response::new(pb::SetOverrideResponse {
            targets: keys.iter().map(key_to_wire).collect(),
        }))
    }
}

fn key_to_wire(key: &TargetKey) -> pb::TargetKey {
    pb::TargetKey {
        service: Some(convert::service_key_to_wire(key.service)),
        address: key.address.to_string(),
        port: u32::from(key.port),
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn record_to_wire(r: &ProbeRecord) -> pb::ProbeResult {
    pb::ProbeResult {
        ok: r.ok,
        reason: r.reason.clone(),
        latency_us: micros(r.latency),
        at_unix_ms: unix_ms(r.at),
    }
}

fn health(h: Health) -> i32 {
    convert::health_to_wire(h).into()
}

fn target_to_wire(view: &TargetView) -> pb::Target {
    let target = &view.target;
    let mut check = convert::check_spec_to_wire(&target.spec);
    let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    check.interval_ms = Some(millis(target.timing.interval));
    check.timeout_ms = Some(millis(target.timing.timeout));
    check.rise = Some(target.timing.rise);
    check.fall = Some(target.timing.fall);
    let (r#override, override_source) = match &view.forced {
        None => (pb::Override::Unspecified, String::new()),
        Some((h, source)) => (
            if *h == Health::Up {
                pb::Override::Up
            } else {
                pb::Override::Down
            },
            match source {
                OverrideSource::Api => "api".to_owned(),
                OverrideSource::File(path) => path.display().to_string(),
            },
        ),
    };
    pb::Target {
        key: Some(key_to_wire(&target.key)),
        service_name: target.service_name.clone(),
        check: Some(check),
        probe_mark: target.mark.unwrap_or(0),
        health: health(view.health),
        probed_health: health(view.probed),
        r#override: r#override.into(),
        override_source,
        last: view.last.as_ref().map(record_to_wire),
        last_failure: view.last_failure.as_ref().map(record_to_wire),
        successes: view.successes,
        failures: view.failures,
        probes: view.probes,
    }
}

fn transition_to_wire(t: &Transition) -> pb::Transition {
    pb::Transition {
        key: Some(key_to_wire(&t.key)),
        service_name: t.service_name.clone(),
        from: health(t.from),
        to: health(t.to),
        reason: t.reason.clone(),
        at_unix_ms: unix_ms(t.at),
    }
}
