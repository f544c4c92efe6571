//! checkd's Prometheus metrics (prefix `tandem_checkd_`): probes by type
//! and result, probe latency histograms by type, transitions, targets by
//! health, and whether ipvsd is reachable. Labels are per type, never per
//! target, so 10,000 targets stay 10,000 probes and not 10,000 series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `type` and `result` of a probe.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The check type.
    pub r#type: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// The check type alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// The check type.
    pub r#type: &'static str,
}

/// A health state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabel {
    /// `up`, `down` or `unknown`.
    pub health: &'static str,
}

/// One check type's probe counters and latency histogram, looked up once
/// per target rather than at every probe.
#[derive(Clone)]
pub struct TypeMetrics {
    ok: Counter,
    failed: Counter,
    latency: Histogram,
}

impl TypeMetrics {
    /// Counts one probe.
    pub fn observe(&self, ok: bool, latency: std::time::Duration) {
        if ok { &self.ok } else { &self.failed }.inc();
        self.latency.observe(latency.as_secs_f64());
    }
}

/// The handles probes and the engine update.
#[derive(Clone)]
pub struct Metrics {
    /// Probes run.
    pub probes: Family<ProbeLabels, Counter>,
    /// Probe latency in seconds.
    pub latency: Family<TypeLabel, Histogram>,
    /// Health transitions by the state entered.
    pub transitions: Family<HealthLabel, Counter>,
    /// Targets by reported health.
    pub targets: Family<HealthLabel, Gauge>,
    /// 1 while the link to ipvsd is up.
    pub ipvsd_connected: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under `checkd_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let sub = registry.sub_registry_with_prefix("checkd");
        sub.register(
            "probes",
            "Probes run, by check type and result",
            metrics.probes.clone(),
        );
        sub.register(
            "probe_duration_seconds",
            "Probe latency, by check type",
            metrics.latency.clone(),
        );
        sub.register(
            "transitions",
            "Health transitions, by the state entered",
            metrics.transitions.clone(),
        );
        sub.register(
            "targets",
            "Targets, by reported health",
            metrics.targets.clone(),
        );
        sub.register(
            "ipvsd_connected",
            "1 while checkd's link to ipvsd is up",
            metrics.ipvsd_connected.clone(),
        );
        metrics
    }

    /// The probe metrics of check type `kind`.
    pub fn of_type(&self, kind: &'static str) -> TypeMetrics {
        let probes = |result| {
            self.probes
                .get_or_create(&ProbeLabels {
                    r#type: kind,
                    result,
                })
                .clone()
        };
        TypeMetrics {
            ok: probes("ok"),
            failed: probes("failed"),
            latency: self
                .latency
                .get_or_create(&TypeLabel { r#type: kind })
                .clone(),
        }
    }

    /// Metrics not exported anywhere (tests).
    pub fn unregistered() -> Self {
        Self {
            probes: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
            }),
            transitions: Family::default(),
            targets: Family::default(),
            ipvsd_connected: Gauge::default(),
        }
    }
}
