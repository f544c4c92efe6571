//! The contract's rules under tokio's paused clock: nothing here sleeps for real.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A hook that records its calls, takes `delay` per call, and fails on
/// entering any state listed in `fail_on`.
#[derive(Default)]
struct Recorder {
    calls: StdMutex<Vec<(State, State)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    delay: Duration,
    fail_on: Vec<State>,
}

impl ResourceHook for Recorder {
    async fn enter(&self, from: State, to: State) -> Result<(), HookError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.calls.lock().unwrap().push((from, to));
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.fail_on.contains(&to) {
            return Err(HookError(format!("cannot enter {to}")));
        }
        Ok(())
    }
}

fn machine(hook: Recorder) -> ResourceMachine<Recorder> {
    ResourceMachine::new("test", hook)
}

#[tokio::test(start_paused = true)]
async fn starts_stopped_at_epoch_zero() {
    let m = machine(Recorder::default());
    let s = m.status();
    assert_eq!(
        (s.state, s.epoch, s.pending, s.transitions),
        (State::Stopped, 0, None, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn stale_epoch_is_refused_and_changes_nothing() {
    let m = machine(Recorder::default());
    m.transition(State::Standby, 5).await.unwrap();
    let err = m.transition(State::Active, 4).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransitionError::StaleEpoch {
                requested: 4,
                highest: 5
            }
        ),
        "{err}"
    );
    let s = m.status();
    assert_eq!((s.state, s.epoch), (State::Standby, 5));
    assert_eq!(m.hook().calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn equal_and_higher_epochs_are_accepted() {
    let m = machine(Recorder::default());
    m.transition(State::Standby, 3).await.unwrap();
    m.transition(State::Active, 3).await.unwrap();
    m.transition(State::Standby, 9).await.unwrap();
    assert_eq!((m.status().state, m.status().epoch), (State::Standby, 9));
}

#[tokio::test(start_paused = true)]
async fn repeated_transition_is_a_no_op_that_records_the_epoch() {
    let m = machine(Recorder::default());
    let first = m.transition(State::Active, 1).await.unwrap();
    let second = m.transition(State::Active, 2).await.unwrap();
    assert!(first.changed);
    assert!(!second.changed);
    assert_eq!(
        m.hook().calls.lock().unwrap().as_slice(),
        &[(State::Stopped, State::Active)]
    );
    assert_eq!((m.status().epoch, m.status().transitions), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn concurrent_transitions_run_one_at_a_time_in_order() {
    let m = machine(Recorder {
        delay: Duration::from_millis(100),
        ..Recorder::default()
    });
    let a = tokio::spawn({
        let m = m.clone();
        async move { m.transition(State::Standby, 1).await }
    });
    tokio::task::yield_now().await;
    let b = tokio::spawn({
        let m = m.clone();
        async move { m.transition(State::Active, 1).await }
    });
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let hook = m.hook();
    assert_eq!(hook.max_running.load(Ordering::SeqCst), 1);
    assert_eq!(
        hook.calls.lock().unwrap().as_slice(),
        &[
            (State::Stopped, State::Standby),
            (State::Standby, State::Active)
        ]
    );
    assert_eq!(m.status().state, State::Active);
}

#[tokio::test(start_paused = true)]
async fn stale_epoch_is_refused_without_waiting_for_a_running_transition() {
    let m = machine(Recorder {
        delay: Duration::from_millis(100),
        ..Recorder::default()
    });
    let newer = tokio::spawn({
        let m = m.clone();
        async move { m.transition(State::Standby, 7).await }
    });
    tokio::task::yield_now().await;
    let asked = tokio::time::Instant::now();
    let stale = m.transition(State::Active, 6).await.unwrap_err();
    assert_eq!(asked.elapsed(), Duration::ZERO);
    assert!(matches!(
        stale,
        TransitionError::StaleEpoch { highest: 7, .. }
    ));
    newer.await.unwrap().unwrap();
    assert_eq!(m.status().state, State::Standby);
}

#[tokio::test(start_paused = true)]
async fn failing_hook_leaves_the_previous_state_and_says_why() {
    let m = machine(Recorder {
        fail_on: vec![State::Active],
        ..Recorder::default()
    });
    m.transition(State::Standby, 1).await.unwrap();
    let err = m.transition(State::Active, 1).await.unwrap_err();
    assert!(err.to_string().contains("cannot enter ACTIVE"), "{err}");
    let s = m.status();
    assert_eq!(
        (s.state, s.pending, s.transitions),
        (State::Standby, None, 1)
    );
    assert!(
        s.detail.contains("STANDBY -> ACTIVE failed"),
        "{}",
        s.detail
    );
}

struct Panicker;

impl ResourceHook for Panicker {
    async fn enter(&self, _from: State, _to: State) -> Result<(), HookError> {
        panic!("hook bug");
    }
}

#[tokio::test(start_paused = true)]
async fn panicking_hook_is_a_failed_transition_and_the_machine_stays_usable() {
    let m = ResourceMachine::new("test", Panicker);
    let err = m.transition(State::Standby, 1).await.unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(m.status().state, State::Stopped);
    // The turn was released: a second request is served (and fails the same way).
    assert!(m.transition(State::Standby, 1).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_interrupt_the_hook() {
    let m = machine(Recorder {
        delay: Duration::from_millis(500),
        ..Recorder::default()
    });
    let caller = tokio::spawn({
        let m = m.clone();
        async move { m.transition(State::Active, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(m.status().pending, Some(State::Active));
    caller.abort();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s = m.status();
    assert_eq!((s.state, s.pending), (State::Active, None));
}

#[tokio::test(start_paused = true)]
async fn watchers_see_pending_then_done() {
    let m = machine(Recorder {
        delay: Duration::from_millis(50),
        ..Recorder::default()
    });
    let mut rx = m.subscribe();
    let t = tokio::spawn({
        let m = m.clone();
        async move { m.transition(State::Standby, 1).await }
    });
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().pending, Some(State::Standby));
    rx.changed().await.unwrap();
    let s = rx.borrow_and_update().clone();
    assert_eq!(
        (s.state, s.pending, s.health),
        (State::Standby, None, Health::Ok)
    );
    t.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn health_changes_are_published_once() {
    let m = machine(Recorder::default());
    let mut rx = m.subscribe();
    m.set_health(Health::Failed, "interface eth9 went away");
    assert!(rx.has_changed().unwrap());
    rx.borrow_and_update();
    m.set_health(Health::Failed, "interface eth9 went away");
    assert!(!rx.has_changed().unwrap());
}
