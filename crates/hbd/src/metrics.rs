//! hbd's Prometheus metrics (prefix `tandem_hbd_`): heartbeats sent,
//! received and rejected, peers alive, this node's role and epoch,
//! takeovers by outcome and how long they took, stalls, split brains and
//! the connectivity score.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A link, by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabel {
    /// The link's name, e.g. `ucast eth0 198.51.100.12`.
    pub link: String,
}

/// Why a heartbeat was dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// See [`crate::wire::Rejected::reason`].
    pub reason: &'static str,
}

/// A peer, by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node's name.
    pub node: String,
}

/// How a takeover ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, `group_failed` or `fence_failed`.
    pub outcome: &'static str,
}

/// Where a takeover duration is measured from (to the group ACTIVE).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinceLabel {
    /// `last_heard` (the dead peer's last heartbeat), `declared_dead` or
    /// `decision`.
    pub since: &'static str,
}

/// A ping target or group, by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    /// The address, or the group's name.
    pub target: String,
}

/// hbd's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Heartbeats sent, by link.
    pub sent: Family<LinkLabel, Counter>,
    /// Heartbeats accepted, by link.
    pub received: Family<LinkLabel, Counter>,
    /// Heartbeats dropped, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// 1 while a peer is alive.
    pub peer_alive: Family<NodeLabel, Gauge>,
    /// Late heartbeats (past warntime), by peer.
    pub late: Family<NodeLabel, Counter>,
    /// 1 while this node advertises ACTIVE.
    pub active: Gauge,
    /// The highest epoch seen.
    pub epoch: Gauge,
    /// Takeovers by outcome.
    pub takeovers: Family<OutcomeLabel, Counter>,
    /// Takeover durations in seconds.
    pub takeover_seconds: Family<SinceLabel, Histogram>,
    /// Stalls of this node's own loop.
    pub stalls: Counter,
    /// Two ACTIVE nodes met.
    pub split_brains: Counter,
    /// This node's connectivity score.
    pub ping_score: Gauge,
    /// 1 while a ping target (or any member of a group) answers.
    pub ping_up: Family<TargetLabel, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them under `hbd_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            sent: Family::default(),
            received: Family::default(),
            rejected: Family::default(),
            peer_alive: Family::default(),
            late: Family::default(),
            active: Gauge::default(),
            epoch: Gauge::default(),
            takeovers: Family::default(),
            takeover_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            stalls: Counter::default(),
            split_brains: Counter::default(),
            ping_score: Gauge::default(),
            ping_up: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("hbd");
        sub.register(
            "heartbeats_sent",
            "Heartbeats sent, by link",
            m.sent.clone(),
        );
        sub.register(
            "heartbeats_received",
            "Heartbeats accepted, by link",
            m.received.clone(),
        );
        sub.register(
            "heartbeats_rejected",
            "Heartbeats dropped, by reason (bad_tag, replayed, wrong_cluster, …)",
            m.rejected.clone(),
        );
        sub.register(
            "peer_alive",
            "1 while the peer is heard",
            m.peer_alive.clone(),
        );
        sub.register(
            "late_heartbeats",
            "Peers heard later than warntime",
            m.late.clone(),
        );
        sub.register(
            "active",
            "1 while this node holds the group",
            m.active.clone(),
        );
        sub.register("epoch", "The highest ownership term seen", m.epoch.clone());
        sub.register("takeovers", "Takeovers, by outcome", m.takeovers.clone());
        sub.register(
            "takeover_seconds",
            "Time to the group ACTIVE, from the dead peer's last heartbeat, from declaring it dead, or from the decision",
            m.takeover_seconds.clone(),
        );
        sub.register(
            "stalls",
            "Stalls of hbd's own loop longer than deadtime",
            m.stalls.clone(),
        );
        sub.register(
            "split_brains",
            "Meetings of two ACTIVE nodes",
            m.split_brains.clone(),
        );
        sub.register(
            "ping_score",
            "This node's connectivity score: ping targets and groups answering",
            m.ping_score.clone(),
        );
        sub.register(
            "ping_up",
            "1 while the ping target (any member of the group) answers",
            m.ping_up.clone(),
        );
        m
    }

    /// The sent and received counters of each link, in link order, so the
    /// per-heartbeat path does no label lookup.
    pub fn per_link(&self, names: &[String]) -> Vec<LinkCounters> {
        names
            .iter()
            .map(|name| {
                let label = LinkLabel { link: name.clone() };
                LinkCounters {
                    sent: self.sent.get_or_create(&label).clone(),
                    received: self.received.get_or_create(&label).clone(),
                }
            })
            .collect()
    }
}

/// One link's heartbeat counters.
#[derive(Clone)]
pub struct LinkCounters {
    /// Heartbeats sent on it.
    pub sent: Counter,
    /// Heartbeats accepted from it.
    pub received: Counter,
}
