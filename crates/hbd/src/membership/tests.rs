//! The membership rules under simulated time: instants are built by
//! adding durations to one start, nothing sleeps.

use super::*;
use crate::config::NodeSpec;

const KEEPALIVE: Duration = Duration::from_millis(100);
const WARNTIME: Duration = Duration::from_millis(300);
const DEADTIME: Duration = Duration::from_millis(500);
const INITDEAD: Duration = Duration::from_secs(2);
const HOLD: Duration = Duration::from_secs(3);

fn config(me: &str, auto_failback: bool) -> HbdConfig {
    HbdConfig {
        cluster: "lvs".into(),
        node: me.into(),
        nodes: vec![
            NodeSpec {
                name: "a".into(),
                priority: 100,
            },
            NodeSpec {
                name: "b".into(),
                priority: 90,
            },
        ],
        timers: Timers {
            keepalive: KEEPALIVE,
            warntime: WARNTIME,
            deadtime: DEADTIME,
            initdead: INITDEAD,
        },
        auto_failback,
        preferred: Some("a".into()),
        failure_hold: HOLD,
        ..HbdConfig::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Delivers `from`'s next heartbeat to `to` at `now`.
fn deliver(from: &mut Membership, to: &mut Membership, now: Instant) -> Vec<Event> {
    let beat = from.heartbeat(now);
    to.heard(
        now,
        0,
        &beat.node,
        PeerState::from_wire(&beat),
        Freshness::New,
    )
}

/// Both nodes hear each other at `now`.
fn exchange(a: &mut Membership, b: &mut Membership, now: Instant) {
    deliver(a, b, now);
    deliver(b, a, now);
}

/// Ticks `m` every keepalive after `from` up to `to` (and at `to`), as the
/// daemon loop does; returns every event.
fn tick_to(m: &mut Membership, from: Instant, to: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    let mut now = from;
    while now < to {
        now = (now + KEEPALIVE).min(to);
        events.extend(m.tick(now));
    }
    events
}

/// Starts the action `m` decides, and completes it.
fn act(m: &mut Membership, now: Instant) -> Option<Action> {
    let action = m.decide(now)?;
    m.begin(&action);
    match &action {
        Action::TakeOver { fence, .. } => {
            for peer in fence {
                m.fenced(peer);
            }
            m.took_over();
        }
        Action::Release => m.released(),
    }
    Some(action)
}

fn takeover(epoch: u64, fence: &[&str]) -> Option<Action> {
    Some(Action::TakeOver {
        epoch,
        fence: fence.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Two nodes started together at `t0` that have settled: `a` ACTIVE.
fn settled(auto_failback: bool) -> (Membership, Membership, Instant) {
    let t0 = Instant::now();
    let mut a = Membership::new(&config("a", auto_failback), 1, t0);
    let mut b = Membership::new(&config("b", auto_failback), 1, t0);
    exchange(&mut a, &mut b, t0);
    assert_eq!(act(&mut a, t0), takeover(1, &[]));
    assert_eq!(act(&mut b, t0), None);
    exchange(&mut a, &mut b, t0 + ms(10));
    (a, b, t0 + ms(10))
}

#[test]
fn alone_waits_initdead_then_takes_over() {
    let t0 = Instant::now();
    let mut a = Membership::new(&config("a", false), 1, t0);
    assert!(tick_to(&mut a, t0, t0 + ms(1900)).is_empty());
    assert_eq!(a.decide(t0 + ms(1900)), None);
    let events = tick_to(&mut a, t0 + ms(1900), t0 + INITDEAD);
    assert_eq!(
        events,
        vec![Event::PeerDead {
            node: "b".into(),
            last_heard: None,
            was_active: false,
            leaving: false,
        }]
    );
    // A node never heard is not fenced: nothing says it ever held the group.
    assert_eq!(a.decide(t0 + INITDEAD), takeover(1, &[]));
}

#[test]
fn hearing_every_peer_ends_initdead_early() {
    let (a, b, now) = settled(false);
    assert_eq!(a.role(), Role::Active);
    assert_eq!(b.role(), Role::Standby);
    assert_eq!(a.owner(now).as_deref(), Some("a"));
    assert_eq!(b.owner(now).as_deref(), Some("a"));
}

#[test]
fn late_then_dead_then_takeover_with_fence_and_new_epoch() {
    let (_a, mut b, t) = settled(false);
    assert!(tick_to(&mut b, t, t + WARNTIME).is_empty());
    let late = b.tick(t + WARNTIME + ms(1));
    assert_eq!(
        late,
        vec![Event::PeerLate {
            node: "a".into(),
            silent: WARNTIME + ms(1),
        }]
    );
    // Warned once per silence.
    assert!(b.tick(t + WARNTIME + ms(50)).is_empty());
    assert_eq!(b.decide(t + DEADTIME), None, "not dead at exactly deadtime");
    let mut now = t;
    for step in 1..=6 {
        now = t + KEEPALIVE * step;
        let events = b.tick(now);
        if now.duration_since(t) > DEADTIME {
            assert!(
                matches!(
                    &events[..],
                    [Event::PeerDead {
                        was_active: true,
                        ..
                    }]
                ),
                "{events:?}"
            );
            break;
        }
    }
    assert_eq!(act(&mut b, now), takeover(2, &["a"]));
    assert_eq!(b.role(), Role::Active);
    assert_eq!(b.epoch(), 2);
}

#[test]
fn auto_failback_on_returns_the_group_to_the_preferred_node() {
    let (_dead_a, mut b, t0) = settled(true);
    let t = t0 + DEADTIME + ms(1);
    tick_to(&mut b, t0, t);
    assert_eq!(act(&mut b, t), takeover(2, &["a"]));
    // a comes back as a new incarnation and hears b ACTIVE.
    let mut a = Membership::new(&config("a", true), 2, t);
    let up = deliver(&mut a, &mut b, t);
    assert_eq!(up, vec![Event::PeerUp { node: "a".into() }]);
    deliver(&mut b, &mut a, t);
    assert_eq!(a.owner(t).as_deref(), Some("a"));
    assert_eq!(a.decide(t), None, "a waits while b still holds the group");
    assert_eq!(act(&mut b, t), Some(Action::Release));
    deliver(&mut b, &mut a, t + ms(1));
    assert_eq!(act(&mut a, t + ms(1)), takeover(3, &[]));
}

#[test]
fn auto_failback_off_leaves_the_group_where_it_is() {
    let (_dead_a, mut b, t0) = settled(false);
    let t = t0 + DEADTIME + ms(1);
    tick_to(&mut b, t0, t);
    act(&mut b, t);
    let mut a = Membership::new(&config("a", false), 2, t);
    exchange(&mut a, &mut b, t);
    assert_eq!(a.owner(t).as_deref(), Some("b"));
    assert_eq!(a.decide(t), None);
    assert_eq!(b.decide(t), None);
}

#[test]
fn split_brain_the_loser_steps_down_at_once() {
    let t0 = Instant::now();
    let mut a = Membership::new(&config("a", false), 1, t0);
    let mut b = Membership::new(&config("b", false), 1, t0);
    // Partitioned from the start: each takes the group alone.
    tick_to(&mut a, t0, t0 + INITDEAD);
    tick_to(&mut b, t0, t0 + INITDEAD);
    assert_eq!(act(&mut a, t0 + INITDEAD), takeover(1, &[]));
    assert_eq!(act(&mut b, t0 + INITDEAD), takeover(1, &[]));
    // b took it again later (say, after a resource restart) under term 2.
    b.released();
    b.begin(&Action::TakeOver {
        epoch: 2,
        fence: vec![],
    });
    b.took_over();
    let heal = t0 + INITDEAD + ms(100);
    let at_a = deliver(&mut b, &mut a, heal);
    let at_b = deliver(&mut a, &mut b, heal);
    let stepping_down_a = Event::SplitBrain {
        stepping_down: "a".into(),
    };
    assert!(at_a.contains(&stepping_down_a), "{at_a:?}");
    assert!(at_b.contains(&stepping_down_a), "{at_b:?}");
    assert_eq!(a.decide(heal), Some(Action::Release));
    assert_eq!(b.decide(heal), None);
    // The event is raised once per meeting.
    assert!(!deliver(&mut b, &mut a, heal + ms(1)).contains(&stepping_down_a));
    // Equal terms: priority decides, and both agree.
    let mut c = Membership::new(&config("a", false), 1, t0);
    let mut d = Membership::new(&config("b", false), 1, t0);
    tick_to(&mut c, t0, t0 + INITDEAD);
    tick_to(&mut d, t0, t0 + INITDEAD);
    act(&mut c, t0 + INITDEAD);
    act(&mut d, t0 + INITDEAD);
    exchange(&mut c, &mut d, heal);
    assert_eq!(c.decide(heal), None);
    assert_eq!(d.decide(heal), Some(Action::Release));
}

#[test]
fn epoch_grows_past_everything_seen() {
    let t0 = Instant::now();
    let mut a = Membership::new(&config("a", false), 1, t0);
    let mut b = Membership::new(&config("b", false), 1, t0);
    b.begin(&Action::TakeOver {
        epoch: 41,
        fence: vec![],
    });
    b.took_over();
    b.released();
    exchange(&mut a, &mut b, t0);
    assert_eq!(a.epoch(), 41);
    assert_eq!(a.decide(t0), takeover(42, &[]));
}

#[test]
fn a_stalled_loop_listens_again_before_declaring_a_peer_dead() {
    let (mut a, mut b, t) = settled(false);
    b.tick(t + KEEPALIVE);
    // b's loop was away for 3 × deadtime (SIGSTOP, a long GC-like pause…).
    let wake = t + DEADTIME * 3;
    let events = b.tick(wake);
    assert!(
        matches!(&events[..], [Event::Stalled { .. }]),
        "no death on stale data: {events:?}"
    );
    assert_eq!(b.decide(wake), None);
    // The peer is heard while b re-listens: nothing happens.
    deliver(&mut a, &mut b, wake + ms(20));
    let events = tick_to(&mut b, wake, wake + DEADTIME + ms(1));
    assert!(
        !events.iter().any(|e| matches!(e, Event::PeerDead { .. })),
        "{events:?}"
    );
    assert_eq!(b.decide(wake + DEADTIME + ms(1)), None);
    // Had it been silent, it is declared dead only after the re-listen.
    let (_a2, mut b2, t2) = settled(false);
    b2.tick(t2 + KEEPALIVE);
    let wake2 = t2 + DEADTIME * 3;
    b2.tick(wake2);
    assert!(tick_to(&mut b2, wake2, wake2 + DEADTIME - ms(1)).is_empty());
    let events = b2.tick(wake2 + DEADTIME);
    assert!(
        matches!(&events[..], [Event::PeerDead { .. }]),
        "{events:?}"
    );
}

#[test]
fn a_failed_group_is_given_up_and_not_retried_within_the_hold() {
    let (mut a, mut b, t) = settled(true);
    a.group_failed(t);
    assert_eq!(act(&mut a, t), Some(Action::Release));
    exchange(&mut a, &mut b, t + ms(1));
    assert_eq!(b.owner(t + ms(1)).as_deref(), Some("b"));
    assert_eq!(act(&mut b, t + ms(1)), takeover(2, &[]));
    // After the hold, a is eligible again but still ranks below b, even
    // though it is the preferred node.
    let later = t + HOLD + ms(10);
    exchange(&mut a, &mut b, later);
    assert_eq!(a.decide(later), None);
    assert_eq!(b.decide(later), None);
    // Alone, a failed node retries only after the hold.
    let t0 = Instant::now();
    let mut lone = Membership::new(&config("a", false), 1, t0);
    tick_to(&mut lone, t0, t0 + INITDEAD);
    let action = lone.decide(t0 + INITDEAD).expect("takes over");
    lone.begin(&action);
    lone.takeover_failed(t0 + INITDEAD, true);
    assert_eq!(lone.decide(t0 + INITDEAD + ms(1)), None);
    assert_eq!(lone.decide(t0 + INITDEAD + HOLD), takeover(2, &[]));
}

#[test]
fn operator_standby_and_takeover() {
    let (mut a, mut b, t) = settled(true);
    a.standby();
    assert_eq!(act(&mut a, t), Some(Action::Release));
    exchange(&mut a, &mut b, t + ms(1));
    assert_eq!(act(&mut b, t + ms(1)), takeover(2, &[]));
    // Takeover on a: its claim is newer than its own standby.
    a.takeover();
    exchange(&mut a, &mut b, t + ms(2));
    assert_eq!(act(&mut b, t + ms(2)), Some(Action::Release));
    exchange(&mut a, &mut b, t + ms(3));
    assert_eq!(act(&mut a, t + ms(3)), takeover(3, &[]));
    // A later takeover on b beats a's.
    b.takeover();
    exchange(&mut a, &mut b, t + ms(4));
    assert_eq!(act(&mut a, t + ms(4)), Some(Action::Release));
    // Alone, a node in standby still serves.
    let t0 = Instant::now();
    let mut lone = Membership::new(&config("a", false), 1, t0);
    lone.standby();
    tick_to(&mut lone, t0, t0 + INITDEAD);
    assert_eq!(lone.decide(t0 + INITDEAD), takeover(1, &[]));
}

#[test]
fn a_leaving_peer_is_dead_at_once_and_not_fenced() {
    let (mut a, mut b, t) = settled(false);
    a.leave();
    assert_eq!(act(&mut a, t), Some(Action::Release));
    let events = deliver(&mut a, &mut b, t + ms(1));
    assert!(
        matches!(&events[..], [Event::PeerDead { leaving: true, .. }]),
        "{events:?}"
    );
    assert_eq!(b.decide(t + ms(1)), takeover(2, &[]));
}

#[test]
fn a_leaving_node_says_so_only_after_it_released() {
    let (mut a, _b, t) = settled(false);
    a.leave();
    let action = a.decide(t).expect("releases");
    a.begin(&action);
    assert!(!a.heartbeat(t).leaving, "still holding the group");
    a.released();
    assert!(a.heartbeat(t).leaving);
}

#[test]
fn score_outranks_preference() {
    let (mut a, mut b, t) = settled(true);
    b.set_score(1);
    exchange(&mut a, &mut b, t + ms(1));
    assert_eq!(act(&mut a, t + ms(1)), Some(Action::Release));
    exchange(&mut a, &mut b, t + ms(2));
    assert_eq!(act(&mut b, t + ms(2)), takeover(2, &[]));
}

#[test]
fn heartbeats_number_themselves() {
    let (mut a, _b, t) = settled(false);
    let first = a.heartbeat(t);
    let second = a.heartbeat(t);
    assert_eq!(second.seq, first.seq + 1);
    assert_eq!(first.term, 1);
    assert_eq!(first.role, pb::Role::Active as i32);
}
