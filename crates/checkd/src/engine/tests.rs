#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

use tandem_ipvsd::config::IpvsdConfig;

use super::*;
use crate::target::targets_of;

fn targets(yaml: &str) -> Vec<Target> {
    let config: IpvsdConfig = tandem_daemon::config::parse(Path::new("t.yaml"), yaml).unwrap();
    targets_of(&config.virtual_services, &std::collections::BTreeMap::new())
}

fn engine() -> Engine {
    Engine::new(Handle::current(), Prober::new(), Metrics::unregistered())
}

fn table(port: u16, check: &str) -> String {
    format!(
        "virtual_services:\n  - name: web\n    address: 198.51.100.10\n    port: 80\n    \
         check: {check}\n    reals:\n      - {{address: 127.0.0.1, port: {port}}}\n"
    )
}

async fn probes_after(engine: &Engine, wait: Duration) -> u64 {
    tokio::time::sleep(wait).await;
    engine.targets()[0].probes
}

#[tokio::test]
async fn an_unchanged_table_keeps_the_running_probes() {
    let engine = engine();
    // An `on` check records once, when its task starts: a restarted task
    // would record again.
    let yaml = table(80, "{type: on}");
    engine.update(targets(&yaml));
    assert_eq!(probes_after(&engine, Duration::from_millis(50)).await, 1);
    // The same table again (ipvsd sends one per version): nothing restarts.
    engine.update(targets(&yaml));
    assert_eq!(probes_after(&engine, Duration::from_millis(50)).await, 1);
    // A changed check does restart it.
    engine.update(targets(&table(80, "{type: on, interval: 2s, timeout: 1s}")));
    assert_eq!(probes_after(&engine, Duration::from_millis(50)).await, 2);
}

#[tokio::test]
async fn a_changed_check_restarts_the_probe_keeping_the_verdict() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let engine = engine();
    engine.update(targets(&table(
        port,
        "{interval: 50ms, timeout: 40ms, rise: 1}",
    )));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(engine.targets()[0].health, Health::Up);
    let _ = engine.take_reports();
    // A new check whose first probe is up to 10 s off and needs three
    // successes: the verdict so far stands meanwhile, and ipvsd is told
    // nothing new.
    engine.update(targets(&table(
        port,
        "{interval: 10s, timeout: 1s, rise: 3, fall: 3}",
    )));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let view = &engine.targets()[0];
    assert_eq!(view.health, Health::Up);
    assert_eq!(view.probed, Health::Up);
    assert!(engine.take_reports().is_empty());

    engine.update(targets(&table(port, "{type: off}")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let view = &engine.targets()[0];
    assert_eq!(view.health, Health::Down);
    assert_eq!(view.last.as_ref().unwrap().reason, "check type off");
    let reports = engine.take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].detail, "check type off");
}

#[tokio::test]
async fn overrides_win_over_probes_and_clear_back_to_them() {
    let engine = engine();
    engine.update(targets(&table(80, "{type: on}")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut watch = engine.subscribe();
    let keys = engine.set_override(|_| true, Some(Health::Down));
    assert_eq!(keys.len(), 1);
    let t = watch.recv().await.unwrap();
    assert_eq!((t.from, t.to), (Health::Up, Health::Down));
    assert_eq!(engine.targets()[0].probed, Health::Up);
    engine.set_maintenance_files(HashMap::from([(
        ("127.0.0.1".parse().unwrap(), None),
        PathBuf::from("/m/127.0.0.1"),
    )]));
    engine.set_override(|_| true, None);
    // Still down: the maintenance file holds it.
    assert_eq!(engine.targets()[0].health, Health::Down);
    engine.set_maintenance_files(HashMap::new());
    assert_eq!(engine.targets()[0].health, Health::Up);
    let moves: Vec<_> = std::iter::from_fn(|| watch.try_recv().ok())
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(moves, [(Health::Down, Health::Up)]);
}

#[tokio::test]
async fn an_override_lifted_before_any_verdict_reports_unknown() {
    let engine = engine();
    // One failed probe at most in this test: fall 3 is far off.
    engine.update(targets(&table(9, "{interval: 10s, timeout: 1s, fall: 3}")));
    engine.set_override(|_| true, Some(Health::Down));
    let down = engine.take_reports();
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].health, Health::Down);
    assert_eq!(down[0].detail, "forced by the operator (checkd)");
    engine.set_override(|_| true, None);
    let released = engine.take_reports();
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0].health, Health::Unknown);
    assert_eq!(released[0].detail, "");
    assert_eq!(engine.targets()[0].probed, Health::Unknown);
    // A new link re-sends what is known, and unknown is not known: a
    // checkd just started must not bring back a real ipvsd has down.
    engine.requeue_all();
    assert_eq!(engine.take_reports(), []);
    engine.set_override(|_| true, Some(Health::Down));
    let _ = engine.take_reports();
    engine.requeue_all();
    let again = engine.take_reports();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].health, Health::Down);
}

#[tokio::test(start_paused = true)]
async fn a_stall_leaves_each_target_in_its_own_slot() {
    let target = targets(&table(80, "{interval: 1s, timeout: 500ms}")).remove(0);
    let start = Instant::now();
    let mut ticks = probe_ticks(&target);
    let first = ticks.tick().await;
    assert_eq!(first, start + target.phase());
    // The thread held up for two and a half intervals: nothing ran.
    tokio::time::advance(Duration::from_millis(2500)).await;
    let stalled = Instant::now();
    ticks.tick().await;
    assert_eq!(
        Instant::now(),
        stalled,
        "the probe that came due goes at once"
    );
    let next = ticks.tick().await;
    assert_eq!(
        next - first,
        Duration::from_secs(3),
        "the next probe is in the target's slot, not an interval after the late one"
    );
}

#[test]
fn probes_a_stall_held_up_wait_their_share_of_it_and_no_others_wait() {
    let interval = Duration::from_secs(1);
    assert_eq!(held_up_wait(Duration::from_millis(5), interval, 0.5), None);
    assert_eq!(held_up_wait(HELD_UP, interval, 0.5), None);
    assert_eq!(
        held_up_wait(Duration::from_millis(300), interval, 0.5),
        Some(Duration::from_millis(150))
    );
    assert_eq!(
        held_up_wait(Duration::from_millis(300), interval, 0.0),
        Some(Duration::ZERO)
    );
    // Never past an interval: the next slot is not missed for it.
    assert_eq!(
        held_up_wait(Duration::from_secs(5), interval, 0.9),
        Some(Duration::from_millis(900))
    );
}

#[test]
fn the_targets_one_stall_held_up_wait_shares_spread_over_the_whole_range() {
    let reals: String = (1..=1000)
        .map(|port| format!("      - {{address: 127.0.0.1, port: {port}}}\n"))
        .collect();
    let all = targets(&format!(
        "virtual_services:\n  - address: 198.51.100.10\n    port: 80\n    \
         check: {{interval: 1s, timeout: 500ms}}\n    reals:\n{reals}"
    ));
    // The targets due in a 300 ms stall: neighbouring phases.
    let window = Duration::from_millis(400)..Duration::from_millis(700);
    let held: Vec<f64> = all
        .iter()
        .filter(|t| window.contains(&t.phase()))
        .map(Target::stall_share)
        .collect();
    assert!((250..350).contains(&held.len()), "{} held up", held.len());
    let mut deciles = [0usize; 10];
    for share in &held {
        assert!((0.0..1.0).contains(share), "{share}");
        deciles[(share * 10.0) as usize] += 1;
    }
    assert!(
        deciles.iter().all(|&n| n >= held.len() / 20),
        "shares bunched: {deciles:?}"
    );
}
