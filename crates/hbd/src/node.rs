//! The node: one task that owns the membership state machine, the replay
//! guard and the links. It ticks every keepalive (judging peers, sending
//! the heartbeat), checks every received heartbeat, starts group changes
//! (fence, then the resources in order) as their own tasks and takes their
//! results back, and publishes the cluster view and events for the API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_proto::hb::v1 as hb;
use tandem_proto::resource::v1::State as ResourceState;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::command;
use crate::config::HbdConfig;
use crate::group::{ActivateError, Group, StepError};
use crate::keys::Keys;
use crate::links::{LinkError, LinkSet, Received};
use crate::membership::{Action, Event, Membership, PeerState, Role};
use crate::metrics::{
    LinkCounters, Metrics, NodeLabel, OutcomeLabel, ReasonLabel, SinceLabel, TargetLabel,
};
use crate::ping::{Layout, Pinger};
use crate::wire::{ReplayGuard, open, seal};

/// An operator request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// hb_standby.
    Standby,
    /// hb_takeover.
    Takeover,
}

/// The node loop is gone (hbd is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("hbd is shutting down")]
pub struct Gone;

/// The API's side of the node.
#[derive(Clone)]
pub struct Handle {
    requests: mpsc::Sender<(Request, oneshot::Sender<()>)>,
    cluster: watch::Receiver<hb::Cluster>,
    events: broadcast::Sender<hb::Event>,
    leave: mpsc::Sender<oneshot::Sender<()>>,
    keys: watch::Sender<Keys>,
}

impl Handle {
    /// Signs and checks with `keys` from now on (key rotation).
    pub fn set_keys(&self, keys: Keys) {
        self.keys.send_replace(keys);
    }

    /// The cluster view as last published.
    pub fn cluster(&self) -> hb::Cluster {
        self.cluster.borrow().clone()
    }

    /// Records an operator request; returns the view once it is applied.
    pub async fn request(&self, request: Request) -> Result<hb::Cluster, Gone> {
        let (done, applied) = oneshot::channel();
        self.requests
            .send((request, done))
            .await
            .map_err(|_| Gone)?;
        applied.await.map_err(|_| Gone)?;
        Ok(self.cluster())
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<hb::Event> {
        self.events.subscribe()
    }

    /// Hands the group over (if held) and tells the peers this node is
    /// leaving; returns when that is done or the loop is gone.
    pub async fn leave(&self) {
        let (done, finished) = oneshot::channel();
        if self.leave.send(done).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// How a group change ended.
enum Done {
    TookOver {
        epoch: u64,
        result: Result<TakeoverSteps, TakeoverFailure>,
    },
    Released(Vec<StepError>),
}

/// What a successful takeover did, in order.
struct TakeoverSteps {
    /// The peers fenced.
    fenced: Vec<String>,
    /// Each step as a timeline entry ("fenced a", "vipd ACTIVE").
    timeline: Vec<(String, Instant)>,
}

enum TakeoverFailure {
    Fence(String),
    Group(ActivateError),
}

/// The timeline of the takeover in progress.
struct Timeline {
    entries: Vec<(String, Instant)>,
    last_heard: Option<Instant>,
    declared: Option<Instant>,
    decision: Instant,
}

impl Timeline {
    fn render(&self) -> String {
        let origin = self.entries.first().map_or(self.decision, |(_, at)| *at);
        self.entries
            .iter()
            .map(|(what, at)| {
                let ms = at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
                format!("{what} +{ms:.1}ms")
            })
            .collect::<Vec<_>>()
            .join(" → ")
    }
}

/// The last peer death seen, for the next takeover's timeline.
struct Death {
    node: String,
    last_heard: Option<Instant>,
    declared: Instant,
}

struct Node {
    config: HbdConfig,
    keys: watch::Receiver<Keys>,
    membership: Membership,
    guard: ReplayGuard,
    links: LinkSet,
    link_counters: Vec<LinkCounters>,
    group: Group,
    metrics: Metrics,
    cluster: watch::Sender<hb::Cluster>,
    events: broadcast::Sender<hb::Event>,
    done_tx: mpsc::Sender<Done>,
    failed_tx: mpsc::Sender<StepError>,
    watching: Option<CancellationToken>,
    timeline: Option<Timeline>,
    death: Option<Death>,
    reannounce_when_peer_standby: bool,
    ping: Layout,
    ping_up: Vec<bool>,
}

/// Opens the links and starts the node loop.
pub fn start(config: HbdConfig, keys: Keys, metrics: Metrics) -> Result<Handle, LinkError> {
    let (heard_tx, heard) = mpsc::channel(1024);
    let links = LinkSet::open(&config.links, &config.timers, heard_tx)?;
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let membership = Membership::new(&config, incarnation, Instant::now());
    let (cluster, cluster_rx) = watch::channel(hb::Cluster::default());
    let (events, _) = broadcast::channel(256);
    let (requests_tx, requests) = mpsc::channel(16);
    let (leave_tx, leave) = mpsc::channel(1);
    let (done_tx, done) = mpsc::channel(4);
    let (failed_tx, failed) = mpsc::channel(16);
    let group = Group::new(&config.resources);
    let (keys_tx, keys) = watch::channel(keys);
    let ping = config.ping.as_ref().map(Layout::new).unwrap_or_default();
    let pinger = Pinger::start(&ping, config.ping.as_ref());
    let node = Node {
        config,
        keys,
        membership,
        guard: ReplayGuard::default(),
        link_counters: metrics.per_link(links.names()),
        links,
        group,
        metrics,
        cluster,
        events: events.clone(),
        done_tx,
        failed_tx,
        watching: None,
        timeline: None,
        death: None,
        reannounce_when_peer_standby: false,
        ping,
        ping_up: Vec::new(),
    };
    tokio::spawn(node.run(Inbox {
        heard,
        requests,
        leave,
        done,
        failed,
        pinger,
    }));
    Ok(Handle {
        requests: requests_tx,
        cluster: cluster_rx,
        events,
        leave: leave_tx,
        keys: keys_tx,
    })
}

struct Inbox {
    heard: mpsc::Receiver<Received>,
    requests: mpsc::Receiver<(Request, oneshot::Sender<()>)>,
    leave: mpsc::Receiver<oneshot::Sender<()>>,
    done: mpsc::Receiver<Done>,
    failed: mpsc::Receiver<StepError>,
    pinger: Pinger,
}

impl Node {
    async fn run(mut self, mut inbox: Inbox) {
        self.prepare().await;
        let mut tick = tokio::time::interval(self.config.timers.keepalive);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut leaving: Option<oneshot::Sender<()>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    let events = self.membership.tick(now);
                    self.handle(events, now);
                    self.send_heartbeat(now);
                    self.publish();
                }
                // The view is republished at the next tick, or at once
                // when the heartbeat changed something worth an event.
                Some(received) = inbox.heard.recv() => self.receive(received),
                Some((request, applied)) = inbox.requests.recv() => {
                    match request {
                        Request::Standby => self.membership.standby(),
                        Request::Takeover => self.membership.takeover(),
                    }
                    tracing::info!(?request, "operator request");
                    self.send_heartbeat(Instant::now());
                    self.decide();
                    // The caller reads the view that includes its request.
                    self.publish();
                    let _ = applied.send(());
                }
                Some(done) = inbox.done.recv() => {
                    self.finished(done);
                    self.publish();
                }
                Some(failure) = inbox.failed.recv() => {
                    self.resource_failed(failure);
                    self.publish();
                }
                up = inbox.pinger.changed() => {
                    self.reachability(up);
                    self.publish();
                }
                Some(done) = inbox.leave.recv(), if leaving.is_none() => {
                    tracing::info!("leaving: handing the group over");
                    self.membership.leave();
                    leaving = Some(done);
                    self.decide();
                    self.publish();
                }
            }
            if leaving.is_some()
                && !self.membership.busy()
                && self.membership.role() == Role::Standby
            {
                // Say so a few times: a peer takes over at once instead of
                // after deadtime.
                for _ in 0..3 {
                    self.send_heartbeat(Instant::now());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if let Some(done) = leaving.take() {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    /// At start: learn the highest epoch the resources accepted, then put
    /// them all in STANDBY (prepared, warm).
    async fn prepare(&mut self) {
        if self.group.is_empty() {
            return;
        }
        let epoch = self.group.highest_epoch().await;
        self.membership.observe_epoch(epoch);
        for failure in self.group.prepare(self.membership.epoch()).await {
            tracing::warn!(resource = %failure.name, error = %failure.why, "could not prepare (STANDBY) at start");
        }
    }

    fn receive(&mut self, received: Received) {
        let now = Instant::now();
        let link = &self.links.names()[received.link];
        let beat = match open(&self.keys.borrow(), &self.config.cluster, &received.bytes) {
            Ok(beat) => beat,
            Err(rejected) => return self.reject(link, &rejected),
        };
        if beat.node == self.config.node {
            // Our own broadcast, looped back.
            return;
        }
        if !self.config.nodes.iter().any(|n| n.name == beat.node) {
            return self.reject(link, &crate::wire::Rejected::UnknownNode(beat.node));
        }
        let freshness =
            match self
                .guard
                .admit(&beat.node, received.link, beat.incarnation, beat.seq)
            {
                Ok(freshness) => freshness,
                Err(rejected) => return self.reject(link, &rejected),
            };
        self.link_counters[received.link].received.inc();
        let state = PeerState::from_wire(&beat);
        let peer_standby = state.role == Role::Standby;
        let events = self
            .membership
            .heard(now, received.link, &beat.node, state, freshness);
        let changed = !events.is_empty();
        self.handle(events, now);
        if peer_standby
            && self.reannounce_when_peer_standby
            && self.membership.role() == Role::Active
        {
            self.reannounce_when_peer_standby = false;
            self.reannounce("the other ACTIVE node stepped down");
        }
        if changed {
            self.publish();
        }
    }

    fn reject(&self, link: &str, rejected: &crate::wire::Rejected) {
        self.metrics
            .rejected
            .get_or_create(&ReasonLabel {
                reason: rejected.reason(),
            })
            .inc();
        tracing::debug!(link, reason = %rejected, "heartbeat dropped");
    }

    fn send_heartbeat(&mut self, now: Instant) {
        let beat = self.membership.heartbeat(now);
        let bytes = seal(&self.keys.borrow(), &beat);
        let failures = self.links.send(&bytes, now);
        for (i, counters) in self.link_counters.iter().enumerate() {
            if !failures.iter().any(|(f, _)| *f == i) {
                counters.sent.inc();
            }
        }
        for (i, error) in failures {
            tracing::debug!(link = %self.links.names()[i], %error, "heartbeat not sent");
        }
    }

    /// Logs, counts and publishes membership events, then decides.
    fn handle(&mut self, events: Vec<Event>, now: Instant) {
        for event in events {
            match &event {
                Event::PeerUp { node } => {
                    tracing::info!(peer = %node, "peer up");
                    self.set_alive(node, true);
                    self.emit(hb::EventKind::PeerUp, node, String::new());
                    if self.membership.role() == Role::Active && !self.membership.busy() {
                        self.reannounce("a peer came back (partition healed?)");
                    }
                }
                Event::PeerLate { node, silent } => {
                    tracing::warn!(peer = %node, silent_ms = silent.as_millis(), "late heartbeat");
                    self.metrics
                        .late
                        .get_or_create(&NodeLabel { node: node.clone() })
                        .inc();
                    self.emit(
                        hb::EventKind::PeerLate,
                        node,
                        format!("silent for {}ms", silent.as_millis()),
                    );
                }
                Event::PeerDead {
                    node,
                    last_heard,
                    was_active,
                    leaving,
                } => {
                    let detail = match (leaving, last_heard) {
                        (true, _) => "said it is leaving".to_owned(),
                        (false, None) => "never heard within initdead".to_owned(),
                        (false, Some(at)) => format!(
                            "silent for {}ms{}",
                            now.saturating_duration_since(*at).as_millis(),
                            if *was_active { ", was ACTIVE" } else { "" }
                        ),
                    };
                    tracing::warn!(peer = %node, %detail, "peer dead");
                    self.set_alive(node, false);
                    self.death = Some(Death {
                        node: node.clone(),
                        last_heard: *last_heard,
                        declared: now,
                    });
                    self.emit(hb::EventKind::PeerDead, node, detail);
                }
                Event::Stalled { gap } => {
                    tracing::warn!(
                        gap_ms = gap.as_millis(),
                        "this node's loop stalled; listening again before judging peers"
                    );
                    self.metrics.stalls.inc();
                    let me = self.config.node.clone();
                    self.emit(
                        hb::EventKind::Stalled,
                        &me,
                        format!("away for {}ms", gap.as_millis()),
                    );
                }
                Event::SplitBrain { stepping_down } => {
                    tracing::warn!(%stepping_down, "two ACTIVE nodes met");
                    self.metrics.split_brains.inc();
                    if *stepping_down != self.config.node {
                        self.reannounce_when_peer_standby = true;
                    }
                    self.emit(hb::EventKind::SplitBrain, stepping_down, String::new());
                }
            }
        }
        self.decide();
    }

    fn set_alive(&self, node: &str, alive: bool) {
        self.metrics
            .peer_alive
            .get_or_create(&NodeLabel {
                node: node.to_owned(),
            })
            .set(i64::from(alive));
    }

    fn emit(&self, kind: hb::EventKind, node: &str, detail: String) {
        let _ = self.events.send(hb::Event {
            unix_ms: unix_ms(),
            kind: kind.into(),
            node: node.to_owned(),
            role: self.membership.role().to_wire().into(),
            epoch: self.membership.epoch(),
            detail,
        });
    }

    /// A ping target went up or down: a new score is told to the peers at
    /// once and may move the group.
    fn reachability(&mut self, up: Vec<bool>) {
        self.ping_up = up;
        let units = self.ping.units(&self.ping_up);
        for (name, up) in &units {
            self.metrics
                .ping_up
                .get_or_create(&TargetLabel {
                    target: (*name).to_owned(),
                })
                .set(i64::from(*up));
        }
        let score = self.ping.score(&self.ping_up);
        if score == self.membership.score() {
            return;
        }
        let detail = units
            .iter()
            .map(|(name, up)| format!("{name} {}", if *up { "up" } else { "down" }))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(score, %detail, "connectivity score changed");
        self.membership.set_score(score);
        self.metrics.ping_score.set(i64::from(score));
        let me = self.config.node.clone();
        self.emit(
            hb::EventKind::ScoreChanged,
            &me,
            format!("score {score}: {detail}"),
        );
        self.send_heartbeat(Instant::now());
        self.decide();
    }

    fn reannounce(&self, why: &'static str) {
        let group = self.group.clone();
        tokio::spawn(async move {
            let announced = group.announce().await;
            if !announced.is_empty() {
                tracing::info!(resources = ?announced, why, "re-announced");
            }
        });
    }

    /// Starts what the membership says to do, if anything.
    fn decide(&mut self) {
        let now = Instant::now();
        let Some(action) = self.membership.decide(now) else {
            return;
        };
        self.membership.begin(&action);
        self.send_heartbeat(now);
        match action {
            Action::TakeOver { epoch, fence } => self.start_takeover(epoch, fence, now),
            Action::Release => self.start_release(),
        }
    }

    fn start_takeover(&mut self, epoch: u64, fence: Vec<String>, now: Instant) {
        let mut entries = Vec::new();
        let death = self.death.take();
        if let Some(death) = &death {
            if let Some(at) = death.last_heard {
                entries.push((format!("{} last heard", death.node), at));
            }
            entries.push((format!("{} declared dead", death.node), death.declared));
        }
        entries.push(("decision".to_owned(), now));
        self.timeline = Some(Timeline {
            entries,
            last_heard: death.as_ref().and_then(|d| d.last_heard),
            declared: death.as_ref().map(|d| d.declared),
            decision: now,
        });
        tracing::info!(epoch, ?fence, "taking the group over");
        self.emit_role();
        let group = self.group.clone();
        let fence_spec = self.config.fence.clone();
        let me = self.config.node.clone();
        let done = self.done_tx.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut steps = TakeoverSteps {
                fenced: Vec::new(),
                timeline: Vec::new(),
            };
            for peer in &fence {
                let Some(spec) = &fence_spec else { break };
                let env = [
                    ("TANDEM_NODE", me.clone()),
                    ("TANDEM_PEER", peer.clone()),
                    ("TANDEM_EPOCH", epoch.to_string()),
                ];
                let outcome = command::run(spec, &env).await;
                let detail = match &outcome {
                    Ok(()) => format!("fenced {peer}"),
                    Err(e) => format!("fencing {peer} failed: {e}"),
                };
                let _ = events.send(hb::Event {
                    unix_ms: unix_ms(),
                    kind: hb::EventKind::Fence.into(),
                    node: peer.clone(),
                    role: hb::Role::Active.into(),
                    epoch,
                    detail: detail.clone(),
                });
                if outcome.is_err() {
                    let _ = done
                        .send(Done::TookOver {
                            epoch,
                            result: Err(TakeoverFailure::Fence(detail)),
                        })
                        .await;
                    return;
                }
                steps.fenced.push(peer.clone());
                steps
                    .timeline
                    .push((format!("fenced {peer}"), Instant::now()));
            }
            let result = group.activate(epoch).await.map_err(TakeoverFailure::Group);
            let result = result.map(|resources| {
                let active = resources
                    .into_iter()
                    .map(|(name, at)| (format!("{name} ACTIVE"), at));
                steps.timeline.extend(active);
                steps
            });
            let _ = done.send(Done::TookOver { epoch, result }).await;
        });
    }

    fn start_release(&mut self) {
        tracing::info!("releasing the group");
        if let Some(watching) = self.watching.take() {
            watching.cancel();
        }
        let group = self.group.clone();
        let epoch = self.membership.epoch();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let failures = group.deactivate(ResourceState::Standby, epoch).await;
            let _ = done.send(Done::Released(failures)).await;
        });
    }

    fn finished(&mut self, done: Done) {
        let now = Instant::now();
        match done {
            Done::TookOver {
                epoch,
                result: Ok(steps),
            } => {
                self.membership.took_over();
                for name in &steps.fenced {
                    self.membership.fenced(name);
                }
                self.metrics
                    .takeovers
                    .get_or_create(&OutcomeLabel { outcome: "ok" })
                    .inc();
                let detail = self.finish_timeline(steps.timeline, now);
                tracing::info!(epoch, timeline = %detail, "group ACTIVE");
                let me = self.config.node.clone();
                self.emit(hb::EventKind::Takeover, &me, detail);
                self.watching = Some(self.group.watch(self.failed_tx.clone()));
            }
            Done::TookOver {
                epoch,
                result: Err(failure),
            } => {
                let (outcome, group_failed, detail) = match failure {
                    TakeoverFailure::Fence(detail) => ("fence_failed", false, detail),
                    TakeoverFailure::Group(e) => ("group_failed", true, e.to_string()),
                };
                self.timeline = None;
                self.membership.takeover_failed(now, group_failed);
                self.metrics
                    .takeovers
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
                tracing::error!(epoch, %detail, "takeover failed; the group is given up");
                let me = self.config.node.clone();
                self.emit(hb::EventKind::GroupFailed, &me, detail);
                self.emit_role();
            }
            Done::Released(failures) => {
                self.membership.released();
                for failure in &failures {
                    tracing::error!(resource = %failure.name, error = %failure.why, "release step failed");
                }
                tracing::info!("group released");
                self.emit_role();
            }
        }
        self.send_heartbeat(now);
        self.decide();
    }

    fn finish_timeline(&mut self, steps: Vec<(String, Instant)>, now: Instant) -> String {
        let Some(mut timeline) = self.timeline.take() else {
            return String::new();
        };
        timeline.entries.extend(steps);
        timeline.entries.push(("group ACTIVE".to_owned(), now));
        let observe = |since: &'static str, from: Option<Instant>| {
            if let Some(from) = from {
                self.metrics
                    .takeover_seconds
                    .get_or_create(&SinceLabel { since })
                    .observe(now.saturating_duration_since(from).as_secs_f64());
            }
        };
        observe("last_heard", timeline.last_heard);
        observe("declared_dead", timeline.declared);
        observe("decision", Some(timeline.decision));
        timeline.render()
    }

    fn resource_failed(&mut self, failure: StepError) {
        if self.membership.role() != Role::Active || self.membership.busy() {
            return;
        }
        tracing::error!(resource = %failure.name, error = %failure.why, "a resource failed while ACTIVE; giving the group up");
        let me = self.config.node.clone();
        self.emit(hb::EventKind::GroupFailed, &me, failure.to_string());
        self.metrics
            .takeovers
            .get_or_create(&OutcomeLabel {
                outcome: "group_failed",
            })
            .inc();
        self.membership.group_failed(Instant::now());
        self.decide();
    }

    fn emit_role(&self) {
        let me = self.config.node.clone();
        let role = self.membership.role();
        self.metrics.active.set(i64::from(role == Role::Active));
        self.emit(hb::EventKind::RoleChanged, &me, String::new());
        if let Some(spec) = self.config.notify.clone() {
            let env = [
                ("TANDEM_NODE", me),
                ("TANDEM_ROLE", format!("{:?}", role).to_uppercase()),
                ("TANDEM_EPOCH", self.membership.epoch().to_string()),
            ];
            tokio::spawn(async move {
                if let Err(e) = command::run(&spec, &env).await {
                    tracing::warn!(error = %e, "notify command failed");
                }
            });
        }
    }

    fn publish(&self) {
        let now = Instant::now();
        self.metrics
            .epoch
            .set(i64::try_from(self.membership.epoch()).unwrap_or(i64::MAX));
        let views = self.membership.view(now);
        let nodes = self
            .config
            .nodes
            .iter()
            .filter_map(|spec| views.iter().find(|v| v.name == spec.name))
            .map(|v| {
                let state = v.state.clone().unwrap_or_default();
                hb::Node {
                    name: v.name.clone(),
                    local: v.local,
                    alive: v.alive,
                    role: if v.state.is_some() {
                        state.role.to_wire().into()
                    } else {
                        hb::Role::Unspecified.into()
                    },
                    epoch: state.epoch,
                    priority: v.priority,
                    score: state.score,
                    eligible: state.eligible,
                    failed: state.failed,
                    preference: state.preference,
                    last_heard_ms: v
                        .silent
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    links: v
                        .links
                        .iter()
                        .filter_map(|i| self.links.names().get(*i).cloned())
                        .collect(),
                    term: state.term,
                }
            })
            .collect();
        let cluster = hb::Cluster {
            cluster: self.config.cluster.clone(),
            node: self.config.node.clone(),
            owner: self.membership.owner(now).unwrap_or_default(),
            epoch: self.membership.epoch(),
            nodes,
            resources: self.group.view(),
            ping: self
                .ping
                .units(&self.ping_up)
                .into_iter()
                .map(|(name, up)| hb::PingTarget {
                    name: name.to_owned(),
                    up,
                })
                .collect(),
        };
        self.cluster.send_if_modified(|old| {
            let changed = *old != cluster;
            if changed {
                *old = cluster;
            }
            changed
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
