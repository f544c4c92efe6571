//! The membership state machine: what this node knows of its peers and of
//! itself, and what it should do about the group. Steppable and
//! time-free: feed it heartbeats ([`Membership::heard`]) and clock ticks
//! ([`Membership::tick`]) at given instants, ask it what to do
//! ([`Membership::decide`]), tell it how that went. It never does I/O;
//! the daemon loop ([`crate::node`]) does.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_proto::hb::v1 as pb;
use tokio::time::Instant;

use crate::config::{HbdConfig, NodeSpec, Timers};
use crate::ownership::{Candidate, Stickiness, owner};
use crate::wire::Freshness;

/// A node's advertised role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Not serving.
    #[default]
    Standby,
    /// Serving, or on its way to, or releasing.
    Active,
}

impl Role {
    /// The wire form.
    pub fn to_wire(self) -> pb::Role {
        match self {
            Self::Standby => pb::Role::Standby,
            Self::Active => pb::Role::Active,
        }
    }
}

/// What a peer last said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerState {
    /// Its highest seen epoch.
    pub epoch: u64,
    /// Its role.
    pub role: Role,
    /// The epoch it took the group under (0 unless active).
    pub term: u64,
    /// Its connectivity score.
    pub score: u32,
    /// Whether it may take the group.
    pub eligible: bool,
    /// Whether its group failed.
    pub failed: bool,
    /// Its operator preference.
    pub preference: i64,
    /// Whether it is shutting down.
    pub leaving: bool,
}

impl PeerState {
    /// From a received heartbeat.
    pub fn from_wire(beat: &pb::Heartbeat) -> Self {
        Self {
            epoch: beat.epoch,
            role: if beat.role == pb::Role::Active as i32 {
                Role::Active
            } else {
                Role::Standby
            },
            term: beat.term,
            score: beat.score,
            eligible: beat.eligible,
            failed: beat.failed,
            preference: beat.preference,
            leaving: beat.leaving,
        }
    }
}

/// Something worth a log line, a metric and a watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer was heard for the first time, or again after being dead.
    PeerUp {
        /// The peer.
        node: String,
    },
    /// A peer is later than warntime.
    PeerLate {
        /// The peer.
        node: String,
        /// How long since it was last heard.
        silent: Duration,
    },
    /// A peer was declared dead.
    PeerDead {
        /// The peer.
        node: String,
        /// When it was last heard (none: never, within initdead).
        last_heard: Option<Instant>,
        /// It was ACTIVE when last heard (so it must be fenced).
        was_active: bool,
        /// It said it was leaving.
        leaving: bool,
    },
    /// This node's loop stalled for longer than deadtime.
    Stalled {
        /// How long the loop was away.
        gap: Duration,
    },
    /// Two ACTIVE nodes met; `stepping_down` is the loser.
    SplitBrain {
        /// The node that will release.
        stepping_down: String,
    },
}

/// What the node should do about the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take the group under `epoch`, after fencing `fence` (peers that
    /// were ACTIVE when they died).
    TakeOver {
        /// The new ownership term.
        epoch: u64,
        /// Peers to fence first.
        fence: Vec<String>,
    },
    /// Give the group up.
    Release,
}

#[derive(Debug)]
struct Peer {
    spec: NodeSpec,
    state: Option<PeerState>,
    heard_at: Option<Instant>,
    links: BTreeMap<usize, Instant>,
    alive: bool,
    warned: bool,
    needs_fence: bool,
    declared_never: bool,
}

/// A read-only view of one node, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// True for this node.
    pub local: bool,
    /// Heard within deadtime (always true for this node).
    pub alive: bool,
    /// Its last state, if ever heard.
    pub state: Option<PeerState>,
    /// Its priority.
    pub priority: u32,
    /// Time since last heard, if ever.
    pub silent: Option<Duration>,
    /// Links (by index) that heard it within deadtime.
    pub links: Vec<usize>,
}

/// This node's membership state.
#[derive(Debug)]
pub struct Membership {
    cluster: String,
    me: String,
    priority: u32,
    timers: Timers,
    stickiness_preferred: Option<String>,
    failure_hold: Duration,
    incarnation: u64,
    seq: u64,
    started: Instant,
    last_tick: Instant,
    relisten_until: Option<Instant>,
    peers: BTreeMap<String, Peer>,
    role: Role,
    term: u64,
    epoch: u64,
    score: u32,
    preference: i64,
    failed: bool,
    hold_until: Option<Instant>,
    busy: bool,
    leaving: bool,
    met_active: BTreeMap<String, bool>,
}

impl Membership {
    /// A node that has just started at `now`, as incarnation `incarnation`.
    pub fn new(config: &HbdConfig, incarnation: u64, now: Instant) -> Self {
        let peers = config
            .nodes
            .iter()
            .filter(|n| n.name != config.node)
            .map(|spec| {
                let peer = Peer {
                    spec: spec.clone(),
                    state: None,
                    heard_at: None,
                    links: BTreeMap::new(),
                    alive: false,
                    warned: false,
                    needs_fence: false,
                    declared_never: false,
                };
                (spec.name.clone(), peer)
            })
            .collect();
        Self {
            cluster: config.cluster.clone(),
            me: config.node.clone(),
            priority: config.own_priority(),
            timers: config.timers,
            stickiness_preferred: config
                .auto_failback
                .then(|| config.preferred.clone())
                .flatten(),
            failure_hold: config.failure_hold,
            incarnation,
            seq: 0,
            started: now,
            last_tick: now,
            relisten_until: None,
            peers,
            role: Role::Standby,
            term: 0,
            epoch: 0,
            score: 0,
            preference: 0,
            failed: false,
            hold_until: None,
            busy: false,
            leaving: false,
            met_active: BTreeMap::new(),
        }
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// This node's advertised role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The highest epoch seen.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Raises the highest epoch seen to at least `epoch` (what the
    /// resources accepted before this start).
    pub fn observe_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Whether a group change is running.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// The next heartbeat to send (each call uses a new sequence number).
    pub fn heartbeat(&mut self, now: Instant) -> pb::Heartbeat {
        self.seq += 1;
        pb::Heartbeat {
            cluster: self.cluster.clone(),
            node: self.me.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            epoch: self.epoch,
            role: self.role.to_wire().into(),
            priority: self.priority,
            score: self.score,
            eligible: self.eligible(now),
            failed: self.failed,
            preference: self.preference,
            // Said only once the group is released, so a peer never takes
            // over from a node still holding it.
            leaving: self.leaving && self.role == Role::Standby && !self.busy,
            term: self.term,
        }
    }

    /// A heartbeat from `node` (already authenticated and admitted by the
    /// replay guard) arrived on `link` at `now`.
    pub fn heard(
        &mut self,
        now: Instant,
        link: usize,
        node: &str,
        state: PeerState,
        freshness: Freshness,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(peer) = self.peers.get_mut(node) else {
            return events;
        };
        peer.links.insert(link, now);
        if freshness == Freshness::SeenElsewhere && peer.alive {
            return events;
        }
        peer.heard_at = Some(now);
        peer.warned = false;
        self.epoch = self.epoch.max(state.epoch);
        if state.leaving {
            if peer.alive {
                peer.alive = false;
                peer.needs_fence = false;
                events.push(Event::PeerDead {
                    node: node.to_owned(),
                    last_heard: Some(now),
                    was_active: state.role == Role::Active,
                    leaving: true,
                });
            }
            peer.state = Some(state);
            return events;
        }
        if !peer.alive {
            peer.alive = true;
            peer.needs_fence = false;
            peer.declared_never = false;
            events.push(Event::PeerUp {
                node: node.to_owned(),
            });
        }
        let both_active = state.role == Role::Active && self.role == Role::Active;
        peer.state = Some(state);
        let met_before = self.met_active.insert(node.to_owned(), both_active);
        if both_active && met_before != Some(true) {
            let stepping_down = match self.owner(now) {
                Some(owner) if owner == self.me => node.to_owned(),
                _ => self.me.clone(),
            };
            events.push(Event::SplitBrain { stepping_down });
        }
        events
    }

    /// The clock reached `now`: judge the peers.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        if gap > self.timers.deadtime {
            self.relisten_until = Some(now + self.timers.deadtime);
            events.push(Event::Stalled { gap });
        }
        let relistening = self.relisten_until.is_some_and(|until| now < until);
        let initdead_over = now >= self.started + self.timers.initdead;
        for (name, peer) in &mut self.peers {
            peer.links
                .retain(|_, at| now.saturating_duration_since(*at) <= self.timers.deadtime);
            let Some(heard_at) = peer.heard_at else {
                if initdead_over && !peer.declared_never && !relistening {
                    peer.declared_never = true;
                    events.push(Event::PeerDead {
                        node: name.clone(),
                        last_heard: None,
                        was_active: false,
                        leaving: false,
                    });
                }
                continue;
            };
            if !peer.alive {
                continue;
            }
            let silent = now.saturating_duration_since(heard_at);
            if silent > self.timers.deadtime && !relistening {
                peer.alive = false;
                let was_active = peer.state.as_ref().is_some_and(|s| s.role == Role::Active);
                peer.needs_fence = was_active;
                self.met_active.remove(name);
                events.push(Event::PeerDead {
                    node: name.clone(),
                    last_heard: Some(heard_at),
                    was_active,
                    leaving: false,
                });
            } else if silent > self.timers.warntime && !peer.warned && !relistening {
                peer.warned = true;
                events.push(Event::PeerLate {
                    node: name.clone(),
                    silent,
                });
            }
        }
        events
    }

    /// Whether this node may take the group now.
    fn eligible(&self, now: Instant) -> bool {
        !self.leaving && self.hold_until.is_none_or(|until| now >= until)
    }

    /// Peers never heard while initdead still runs: no decision yet.
    fn waiting_for_peers(&self, now: Instant) -> bool {
        now < self.started + self.timers.initdead
            && self.peers.values().any(|p| p.heard_at.is_none())
    }

    /// The node that should own the group now, by the rules of
    /// [`crate::ownership`]; none while waiting for peers at start or
    /// when nobody is eligible.
    pub fn owner(&self, now: Instant) -> Option<String> {
        if self.waiting_for_peers(now) {
            return None;
        }
        let mut candidates = vec![Candidate {
            name: &self.me,
            eligible: self.eligible(now),
            failed: self.failed,
            score: self.score,
            preference: self.preference,
            active: self.role == Role::Active,
            term: self.term,
            priority: self.priority,
        }];
        for peer in self.peers.values().filter(|p| p.alive) {
            let Some(state) = &peer.state else { continue };
            candidates.push(Candidate {
                name: &peer.spec.name,
                eligible: state.eligible && !state.leaving,
                failed: state.failed,
                score: state.score,
                preference: state.preference,
                active: state.role == Role::Active,
                term: state.term,
                priority: peer.spec.priority,
            });
        }
        let stickiness = match &self.stickiness_preferred {
            Some(name) => Stickiness::Preferred(name),
            None => Stickiness::CurrentOwner,
        };
        owner(&candidates, stickiness).map(str::to_owned)
    }

    /// What to do about the group now, if anything. Nothing while a group
    /// change is running.
    pub fn decide(&self, now: Instant) -> Option<Action> {
        if self.busy {
            return None;
        }
        let owner = self.owner(now);
        let mine = owner.as_deref() == Some(self.me.as_str());
        match self.role {
            Role::Active if !mine && (owner.is_some() || !self.eligible(now)) => {
                Some(Action::Release)
            }
            Role::Standby if mine => {
                // A live peer still holding the group releases first.
                let peer_active = self
                    .peers
                    .values()
                    .any(|p| p.alive && p.state.as_ref().is_some_and(|s| s.role == Role::Active));
                (!peer_active).then(|| Action::TakeOver {
                    epoch: self.epoch + 1,
                    fence: self
                        .peers
                        .values()
                        .filter(|p| p.needs_fence)
                        .map(|p| p.spec.name.clone())
                        .collect(),
                })
            }
            _ => None,
        }
    }

    /// The daemon started `action`. Going ACTIVE is advertised from now.
    pub fn begin(&mut self, action: &Action) {
        self.busy = true;
        if let Action::TakeOver { epoch, .. } = action {
            self.role = Role::Active;
            self.epoch = self.epoch.max(*epoch);
            self.term = *epoch;
        }
    }

    /// Fencing `peer` succeeded: it need not be fenced again.
    pub fn fenced(&mut self, peer: &str) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.needs_fence = false;
        }
    }

    /// The takeover finished: the group is ACTIVE here.
    pub fn took_over(&mut self) {
        self.busy = false;
        self.failed = false;
    }

    /// The takeover could not complete (fence or a resource failed; the
    /// group is rolled back). `group_failed` is false when only the fence
    /// failed: the node is held back but not marked failed.
    pub fn takeover_failed(&mut self, now: Instant, group_failed: bool) {
        self.busy = false;
        self.role = Role::Standby;
        self.term = 0;
        self.failed |= group_failed;
        self.hold_until = Some(now + self.failure_hold);
    }

    /// The release finished: the group is STANDBY here.
    pub fn released(&mut self) {
        self.busy = false;
        self.role = Role::Standby;
        self.term = 0;
    }

    /// A resource failed while ACTIVE: give the group up and stay
    /// ineligible for the failure hold.
    pub fn group_failed(&mut self, now: Instant) {
        self.failed = true;
        self.hold_until = Some(now + self.failure_hold);
    }

    /// Operator standby (hb_standby): rank below every other node.
    pub fn standby(&mut self) {
        self.preference = -(self.next_preference());
    }

    /// Operator takeover (hb_takeover): rank above every node without a
    /// later takeover; clears a failure.
    pub fn takeover(&mut self) {
        self.preference = self.next_preference();
        self.failed = false;
        self.hold_until = None;
    }

    fn next_preference(&self) -> i64 {
        let highest = self
            .peers
            .values()
            .filter_map(|p| p.state.as_ref())
            .map(|s| s.preference.unsigned_abs())
            .chain([self.preference.unsigned_abs()])
            .max()
            .unwrap_or(0);
        i64::try_from(highest.saturating_add(1)).unwrap_or(i64::MAX)
    }

    /// This node's connectivity score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// Sets this node's connectivity score.
    pub fn set_score(&mut self, score: u32) {
        self.score = score;
    }

    /// The node is shutting down: its next heartbeats say so.
    pub fn leave(&mut self) {
        self.leaving = true;
    }

    /// Every node as this node sees it, in config order is the caller's
    /// job; this is this node first, then peers by name.
    pub fn view(&self, now: Instant) -> Vec<NodeView> {
        let me = NodeView {
            name: self.me.clone(),
            local: true,
            alive: true,
            state: Some(PeerState {
                epoch: self.epoch,
                role: self.role,
                term: self.term,
                score: self.score,
                eligible: self.eligible(now),
                failed: self.failed,
                preference: self.preference,
                leaving: self.leaving,
            }),
            priority: self.priority,
            silent: Some(Duration::ZERO),
            links: Vec::new(),
        };
        let peers = self.peers.values().map(|p| NodeView {
            name: p.spec.name.clone(),
            local: false,
            alive: p.alive,
            state: p.state.clone(),
            priority: p.spec.priority,
            silent: p.heard_at.map(|at| now.saturating_duration_since(at)),
            links: p.links.keys().copied().collect(),
        });
        std::iter::once(me).chain(peers).collect()
    }
}

#[cfg(test)]
mod tests;
