//! The engine: every target's probe loop and what it found. One task per
//! target probes at its interval from its own phase (see
//! [`Target::phase`]); results go through rise/fall; a change in the
//! reported health (the operator's override if any, else the probes')
//! is a transition: logged once, counted, broadcast to watchers, and
//! queued for ipvsd.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tandem_ipvsd::effective::Health;
use tokio::runtime::Handle;
use tokio::sync::{Notify, broadcast};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::metrics::{HealthLabel, Metrics, TypeMetrics};
use crate::probe::Prober;
use crate::target::{Plan, Target, TargetKey};
use crate::verdict::RiseFall;

/// How many transitions a slow watcher may fall behind before it misses some.
const TRANSITION_BACKLOG: usize = 4096;

/// One probe's result as kept for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed (empty when ok).
    pub reason: String,
    /// How long it took.
    pub latency: Duration,
    /// When it ended.
    pub at: SystemTime,
}

/// Where an override comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverrideSource {
    /// `SetOverride` over gRPC.
    Api,
    /// A file in the maintenance directory.
    File(PathBuf),
}

/// A target's reported health changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The target.
    pub key: TargetKey,
    /// Its service's name.
    pub service_name: String,
    /// Health before.
    pub from: Health,
    /// Health now.
    pub to: Health,
    /// The probe result or override behind it.
    pub reason: String,
    /// When.
    pub at: SystemTime,
}

/// What a target's health report to ipvsd says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The target.
    pub key: TargetKey,
    /// Up, down, or unknown (again).
    pub health: Health,
    /// The reason (for a down real).
    pub detail: String,
}

/// A target as the API shows it.
#[derive(Clone, Debug)]
pub struct TargetView {
    /// The target.
    pub target: Arc<Target>,
    /// Reported health.
    pub health: Health,
    /// The probes' verdict.
    pub probed: Health,
    /// The override in force, and where it comes from.
    pub forced: Option<(Health, OverrideSource)>,
    /// Last probe.
    pub last: Option<ProbeRecord>,
    /// Last failed probe.
    pub last_failure: Option<ProbeRecord>,
    /// Consecutive successes.
    pub successes: u32,
    /// Consecutive failures.
    pub failures: u32,
    /// Probes run.
    pub probes: u64,
}

struct Entry {
    target: Arc<Target>,
    verdict: RiseFall,
    api_override: Option<Health>,
    file_override: Option<PathBuf>,
    last: Option<ProbeRecord>,
    last_failure: Option<ProbeRecord>,
    probes: u64,
    reported: Health,
    task: Option<AbortHandle>,
}

impl Entry {
    fn forced(&self) -> Option<(Health, OverrideSource)> {
        match (self.api_override, &self.file_override) {
            (Some(h), _) => Some((h, OverrideSource::Api)),
            (None, Some(path)) => Some((Health::Down, OverrideSource::File(path.clone()))),
            (None, None) => None,
        }
    }

    fn health(&self) -> Health {
        self.forced().map_or(self.verdict.health(), |(h, _)| h)
    }
}

#[derive(Default)]
struct Table {
    /// Looked up on every probe's result: hashed with foldhash, not
    /// SipHash (a few dozen instructions a lookup instead of about 500;
    /// the keys come from the operator's config, not from the network).
    entries: HashMap<TargetKey, Entry, foldhash::fast::RandomState>,
    /// Targets whose health ipvsd has not been told yet.
    dirty: HashSet<TargetKey>,
    /// Maintenance files: address, optional port, the file.
    files: HashMap<(IpAddr, Option<u16>), PathBuf>,
}

struct Shared {
    table: Mutex<Table>,
    /// The runtime probes run on (see [`probe_thread`]).
    probes: Handle,
    prober: Prober,
    metrics: Metrics,
    transitions: broadcast::Sender<Transition>,
    dirty: Notify,
    connected: AtomicBool,
}

/// The probe engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// An engine with no targets; probe tasks run on `probes`.
    pub fn new(probes: Handle, prober: Prober, metrics: Metrics) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                probes,
                prober,
                metrics,
                transitions: broadcast::channel(TRANSITION_BACKLOG).0,
                dirty: Notify::new(),
                connected: AtomicBool::new(false),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.shared
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `targets` the set probed: new ones start (unknown), removed
    /// ones stop, changed ones restart with their verdict kept.
    pub fn update(&self, targets: Vec<Target>) {
        let mut table = self.table();
        let wanted: HashSet<TargetKey> = targets.iter().map(|t| t.key).collect();
        let removed: Vec<TargetKey> = table
            .entries
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in removed {
            if let Some(entry) = table.entries.remove(&key) {
                stop(&entry);
                self.count_target(entry.reported, -1);
            }
            table.dirty.remove(&key);
        }
        for target in targets {
            let key = target.key;
            match table.entries.get_mut(&key) {
                // Unchanged: the running task and its results stand.
                Some(entry) if same_target(&entry.target, &target) => {}
                Some(entry) => {
                    stop(entry);
                    entry.verdict.retune(target.timing.rise, target.timing.fall);
                    let target = Arc::new(target);
                    entry.target = target.clone();
                    entry.task = Some(self.spawn(target));
                }
                None => {
                    let target = Arc::new(target);
                    let mut entry = Entry {
                        verdict: RiseFall::new(target.timing.rise, target.timing.fall),
                        target: target.clone(),
                        api_override: None,
                        file_override: None,
                        last: None,
                        last_failure: None,
                        probes: 0,
                        reported: Health::Unknown,
                        task: None,
                    };
                    self.count_target(Health::Unknown, 1);
                    entry.task = Some(self.spawn(target));
                    table.entries.insert(key, entry);
                }
            }
            self.apply_maintenance_file(&mut table, key);
        }
    }

    /// Sets `key`'s maintenance-file override from the files known (a file
    /// for its address and port, else for its address), settling a change.
    fn apply_maintenance_file(&self, table: &mut Table, key: TargetKey) {
        let file = table
            .files
            .get(&(key.address, Some(key.port)))
            .or_else(|| table.files.get(&(key.address, None)))
            .cloned();
        let Some(entry) = table.entries.get_mut(&key) else {
            return;
        };
        if entry.file_override == file {
            return;
        }
        let reason = file.as_ref().map_or_else(
            || "maintenance file removed".to_owned(),
            |p| format!("maintenance file {}", p.display()),
        );
        entry.file_override = file;
        self.settle(table, key, &reason);
    }

    fn spawn(&self, target: Arc<Target>) -> AbortHandle {
        self.shared
            .probes
            .spawn(probe_loop(self.clone(), target))
            .abort_handle()
    }

    /// Counts one probe result of `target` (ignored if the target changed
    /// since the probe started).
    fn record(
        &self,
        target: &Arc<Target>,
        result: Result<(), String>,
        latency: Duration,
        meter: &TypeMetrics,
    ) {
        let kind = target.kind();
        let ok = result.is_ok();
        meter.observe(ok, latency);
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(&target.key) else {
            return;
        };
        if !Arc::ptr_eq(&entry.target, target) {
            return;
        }
        let record = ProbeRecord {
            ok,
            reason: result.err().unwrap_or_default(),
            latency,
            at: SystemTime::now(),
        };
        entry.probes += 1;
        if !ok {
            entry.last_failure = Some(record.clone());
        }
        let changed = match target.plan {
            Plan::Forced(health) => entry.verdict.force(health),
            Plan::Unprobeable(_) => None,
            _ => entry.verdict.record(ok),
        };
        let reason = changed.map(|_| {
            if ok {
                format!("{kind} check passed")
            } else {
                record.reason.clone()
            }
        });
        entry.last = Some(record);
        if let Some(reason) = reason {
            self.settle(&mut table, target.key, &reason);
        }
    }

    /// Compares a target's health with what was last reported; on a
    /// change: log, count, broadcast, queue for ipvsd.
    fn settle(&self, table: &mut Table, key: TargetKey, reason: &str) {
        let Some(entry) = table.entries.get_mut(&key) else {
            return;
        };
        let (from, to) = (entry.reported, entry.health());
        if from == to {
            return;
        }
        entry.reported = to;
        let transition = Transition {
            key,
            service_name: entry.target.service_name.clone(),
            from,
            to,
            reason: reason.to_owned(),
            at: SystemTime::now(),
        };
        match to {
            Health::Down => {
                tracing::warn!(target = %key, service = %transition.service_name, reason, "real server down")
            }
            _ => {
                tracing::info!(target = %key, service = %transition.service_name, reason, health = health_name(to), "real server health")
            }
        }
        self.count_target(from, -1);
        self.count_target(to, 1);
        self.shared
            .metrics
            .transitions
            .get_or_create(&HealthLabel {
                health: health_name(to),
            })
            .inc();
        let _no_watchers = self.shared.transitions.send(transition);
        table.dirty.insert(key);
        self.shared.dirty.notify_one();
    }

    fn count_target(&self, health: Health, delta: i64) {
        self.shared
            .metrics
            .targets
            .get_or_create(&HealthLabel {
                health: health_name(health),
            })
            .inc_by(delta);
    }

    /// Sets or clears (`None`) the operator's override on every target
    /// `select` picks; returns them.
    pub fn set_override(
        &self,
        select: impl Fn(&TargetKey) -> bool,
        health: Option<Health>,
    ) -> Vec<TargetKey> {
        let mut table = self.table();
        let mut keys: Vec<TargetKey> = table
            .entries
            .keys()
            .filter(|k| select(k))
            .copied()
            .collect();
        keys.sort();
        let reason = match health {
            Some(Health::Up) => "forced up by the operator",
            Some(_) => "forced down by the operator",
            None => "operator override cleared",
        };
        for key in &keys {
            if let Some(entry) = table.entries.get_mut(key) {
                entry.api_override = health;
            }
            self.settle(&mut table, *key, reason);
        }
        keys
    }

    /// Replaces the maintenance files (address, optional port → file).
    pub fn set_maintenance_files(&self, files: HashMap<(IpAddr, Option<u16>), PathBuf>) {
        let mut table = self.table();
        if table.files == files {
            return;
        }
        table.files = files;
        let keys: Vec<TargetKey> = table.entries.keys().copied().collect();
        for key in keys {
            self.apply_maintenance_file(&mut table, key);
        }
    }

    /// Every target, in key order.
    pub fn targets(&self) -> Vec<TargetView> {
        let table = self.table();
        let mut views: Vec<TargetView> = table
            .entries
            .values()
            .map(|e| TargetView {
                target: e.target.clone(),
                health: e.health(),
                probed: e.verdict.health(),
                forced: e.forced(),
                last: e.last.clone(),
                last_failure: e.last_failure.clone(),
                successes: e.verdict.successes(),
                failures: e.verdict.failures(),
                probes: e.probes,
            })
            .collect();
        views.sort_by_key(|v| v.target.key);
        views
    }

    /// Transitions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.shared.transitions.subscribe()
    }

    /// Takes the reports ipvsd has not had yet. Unknown is reported too:
    /// a real forced down and released before its probes reached a verdict
    /// must not stay down in ipvsd.
    pub fn take_reports(&self) -> Vec<Report> {
        let mut table = self.table();
        let dirty = std::mem::take(&mut table.dirty);
        let mut reports: Vec<Report> = dirty
            .into_iter()
            .filter_map(|key| {
                let entry = table.entries.get(&key)?;
                Some(Report {
                    key,
                    health: entry.health(),
                    detail: detail_of(entry),
                })
            })
            .collect();
        reports.sort_by_key(|r| r.key);
        reports
    }

    /// Puts reports back for the next attempt (their delivery failed).
    pub fn requeue(&self, reports: &[Report]) {
        let mut table = self.table();
        table.dirty.extend(reports.iter().map(|r| r.key));
    }

    /// Queues every target's known health again (a new link to ipvsd).
    /// Unknown is not sent here: a checkd just started knows nothing yet,
    /// and ipvsd's last verdict (a real down) stands until the probes
    /// decide. A move to unknown is still sent, as any transition is.
    pub fn requeue_all(&self) {
        let mut table = self.table();
        let keys: Vec<TargetKey> = table
            .entries
            .iter()
            .filter(|(_, e)| e.health() != Health::Unknown)
            .map(|(k, _)| *k)
            .collect();
        table.dirty.extend(keys);
        self.shared.dirty.notify_one();
    }

    /// Waits until there are reports to send.
    pub async fn reports_pending(&self) {
        self.shared.dirty.notified().await;
    }

    /// Records whether the link to ipvsd is up.
    pub fn set_connected(&self, up: bool) {
        self.shared.connected.store(up, Ordering::Relaxed);
        self.shared.metrics.ipvsd_connected.set(i64::from(up));
    }

    /// Whether the link to ipvsd is up.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }
}

/// Starts the thread every probe runs on: one current-thread runtime, so
/// probing takes one core at most, and its tasks never wake another worker
/// or contend for the allocator with it (measured: 10,000 HTTP probes/s
/// cost a third less CPU than on the daemon's multi-thread runtime).
pub fn probe_thread() -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Whether a target is unchanged by a new table, so its task keeps going.
fn same_target(a: &Target, b: &Target) -> bool {
    a.spec == b.spec
        && a.addr == b.addr
        && a.mark == b.mark
        && a.virtual_addr == b.virtual_addr
        && a.service_name == b.service_name
}

fn stop(entry: &Entry) {
    if let Some(task) = &entry.task {
        task.abort();
    }
}

fn detail_of(entry: &Entry) -> String {
    match entry.forced() {
        Some((_, OverrideSource::Api)) => "forced by the operator (checkd)".into(),
        Some((_, OverrideSource::File(path))) => format!("maintenance file {}", path.display()),
        None => entry
            .last_failure
            .as_ref()
            .filter(|_| entry.verdict.health() == Health::Down)
            .map(|f| f.reason.clone())
            .unwrap_or_default(),
    }
}

/// `up`, `down` or `unknown`.
pub fn health_name(health: Health) -> &'static str {
    match health {
        Health::Unknown => "unknown",
        Health::Up => "up",
        Health::Down => "down",
    }
}

/// When `target` is probed: from its phase, every interval. A probe that
/// came due while the thread was held up (the host stalled, a burst ran
/// long) goes soon after (see [`held_up_wait`]), and the next keeps to the
/// target's own slot: restarting the interval from the late probe would
/// bunch every target one stall held up into one burst, every interval
/// from then on.
fn probe_ticks(target: &Target) -> Interval {
    let mut ticks =
        tokio::time::interval_at(Instant::now() + target.phase(), target.timing.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}

/// How late a probe may go before it waits (see [`held_up_wait`]): more
/// than ordinary scheduling lag, so a probe on time sets no extra timer.
const HELD_UP: Duration = Duration::from_millis(20);

/// What a probe held up `late` (past its slot, or past the end of its
/// previous probe if that ran into the slot) waits first: `share` (the
/// target's [`Target::stall_share`]) of the delay, at most of one interval.
/// So the probes one stall held up go out over as long as the stall
/// lasted, not all at the instant it ended (after 300 ms, 3,000 of 10,000
/// targets at once, each holding hyper's buffers: 83-120 MiB for a second).
fn held_up_wait(late: Duration, interval: Duration, share: f64) -> Option<Duration> {
    (late > HELD_UP).then(|| late.min(interval).mul_f64(share))
}

/// Probes `target` every interval from its phase, for as long as the task
/// is not aborted. `on`/`off` and unprobeable targets are settled once.
async fn probe_loop(engine: Engine, target: Arc<Target>) {
    let meter = engine.shared.metrics.of_type(target.kind());
    match &target.plan {
        Plan::Forced(health) => {
            let result = match health {
                Health::Up => Ok(()),
                _ => Err("check type off".to_owned()),
            };
            return engine.record(&target, result, Duration::ZERO, &meter);
        }
        Plan::Unprobeable(reason) => {
            tracing::warn!(target = %target.key, reason, "real server not probed");
            return engine.record(&target, Err(reason.clone()), Duration::ZERO, &meter);
        }
        _ => {}
    }
    let mut ticks = probe_ticks(&target);
    let share = target.stall_share();
    let mut ended = Instant::now();
    loop {
        let due = ticks.tick().await;
        // A probe that ran into this slot made it late, not a stall: that
        // lateness is not waited again (it would push the next one later).
        let late = due.max(ended).elapsed();
        if let Some(wait) = held_up_wait(late, target.timing.interval, share) {
            // Boxed, as the probe is: rare, and not in every idle task.
            Box::pin(tokio::time::sleep(wait)).await;
        }
        let started = Instant::now();
        // Boxed: an idle target's task holds only this loop, not the
        // largest probe's state (10,000 idle tasks would hold 10,000).
        let result = Box::pin(engine.shared.prober.probe(&target)).await;
        ended = Instant::now();
        engine.record(
            &target,
            result.map_err(|e| e.to_string()),
            ended - started,
            &meter,
        );
    }
}

#[cfg(test)]
mod tests;
