//! Benchmark: checkd probing 10,000 targets, each a real listener (100
//! addresses x 100 ports, served by this process), at a 1 s interval, with
//! TCP and then HTTP checks: first on loopback, then (as root) on namespace
//! addresses (see [`split`]), where the director's core is measured alone.
//! Targets come from a real ipvsd (STOPPED: the host has no IPVS, which
//! checkd does not need). Prints, over a 10 s window: probes/s, checkd's CPU seconds per 1,000 probes and
//! its share of one core, its RSS, and the spread of probe start times as
//! the servers saw them (each target's interval drift; how evenly probes
//! fall across the second). Each checkd window is measured again after
//! checkd was stopped for [`STALL`]. After the HTTP windows, the same for the floor
//! (see [`floor`]) and checkd's CPU per probe over it. Then both again on
//! 500 targets under callgrind, counting instructions per probe (see
//! [`instructions`]). Then, as root, the peer: in one boot of the kernel VM
//! (keepalived's checker needs IPVS), checkd's and keepalived's `HTTP_GET`
//! probing the same 1,000 targets, and the CPU-per-probe ratio.
//! Asserts nothing about speed.
//!
//! Run: `cargo build --release --bins && cargo bench -p
//! tandem-integration-tests --bench checkd_probes` (`CHECKD_BENCH_ONLY=http`
//! runs one check type on the host; `CHECKD_BENCH_PLACE=loopback`,
//! `=namespaces` or `=callgrind` one place; `CHECKD_BENCH_NO_PEER=1` skips
//! the VM).

#![allow(
    clippy::unwrap_used,
    reason = "benchmark: a panic is the failure report"
)]

mod floor;
mod instructions;
mod split;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_integration_tests::guest::IN_VM;
use tandem_integration_tests::process::{Daemon, binary, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use split::Split;

/// Addresses on the host; the VM run uses [`VM_ADDRESSES`].
const ADDRESSES: u8 = 100;
const VM_ADDRESSES: u8 = 10;
const PORTS: u16 = 100;
const FIRST_PORT: u16 = 20_000;
const WARMUP: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(10);
/// How long after the warm-up every target may take to be probed once.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long checkd is stopped before its second window.
const STALL: Duration = Duration::from_millis(300);
const DIR: &str = "/tmp/checkd-bench";
/// Every server's answer to an HTTP request.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

type Arrivals = Arc<Mutex<HashMap<SocketAddr, Vec<Instant>>>>;

/// Where the targets listen and the probers run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `127.0.0.1`…: the kernel's work for both ends of every connection
    /// is charged to the prober.
    Loopback,
    /// `198.51.100.1`… in their own namespace (see [`split`]).
    Namespaces,
}

impl Place {
    /// Target `a`, `p`: address `a` (from 1), port `p` (from [`FIRST_PORT`]).
    fn target(self, a: u8, p: u16) -> SocketAddr {
        let base = match self {
            Self::Loopback => [127, 0, 0],
            Self::Namespaces => split::REALS,
        };
        SocketAddr::new(
            Ipv4Addr::new(base[0], base[1], base[2], a + 1).into(),
            FIRST_PORT + p,
        )
    }

    /// Every target of `addresses` addresses.
    fn targets(self, addresses: u8) -> Vec<SocketAddr> {
        (0..PORTS)
            .flat_map(|p| (0..addresses).map(move |a| self.target(a, p)))
            .collect()
    }

    /// As [`floor::ask`] carries it to the floor's process.
    fn name(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Namespaces => "namespaces",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Loopback, Self::Namespaces]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// Non-blocking listeners on `targets`, opened on this thread (in its
/// namespace).
fn bind(targets: &[SocketAddr]) -> Vec<std::net::TcpListener> {
    targets
        .iter()
        .map(|addr| {
            let listener = std::net::TcpListener::bind(addr)
                .unwrap_or_else(|e| panic!("listening on {addr}: {e}"));
            listener.set_nonblocking(true).unwrap();
            listener
        })
        .collect()
}

/// Serves `listeners` until the set is dropped; each connection's arrival
/// is logged by the address it reached; HTTP requests get a small 200.
fn serve(arrivals: &Arrivals, listeners: Vec<std::net::TcpListener>) -> JoinSet<()> {
    let mut servers = JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let arrivals = arrivals.clone();
        servers.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let at = Instant::now();
                arrivals.lock().unwrap().entry(addr).or_default().push(at);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut seen = Vec::new();
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = stream.write_all(RESPONSE).await;
                            return;
                        }
                    }
                });
            }
        });
    }
    servers
}

fn ipvsd_config(check: &str, place: Place, addresses: u8) -> String {
    let mut out = String::from("virtual_services:\n");
    for p in 0..PORTS {
        out.push_str(&format!(
            "  - address: 203.0.113.10\n    port: {}\n    forward: masq\n    check: {{type: {check}, interval: 1s, timeout: 800ms}}\n    reals:\n",
            10_000 + p
        ));
        for a in 0..addresses {
            let t = place.target(a, p);
            out.push_str(&format!(
                "      - {{address: {}, port: {}}}\n",
                t.ip(),
                t.port()
            ));
        }
    }
    out
}

/// User and system CPU of `pid` (utime, stime), in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let secs = |i: usize| fields[i].parse::<u64>().unwrap() as f64 / 100.0;
    (secs(11), secs(12))
}

/// The resident part of `pid`'s `[heap]` mapping (malloc's main arena),
/// in KiB: where an RSS that grew went.
fn heap_kib(pid: u32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut in_heap = false;
    let mut kib = 0;
    for line in smaps.lines() {
        // A mapping's first line starts with its range; its fields with `Name:`.
        if !line.split_whitespace().next().unwrap_or(":").ends_with(':') {
            in_heap = line.ends_with("[heap]");
        } else if in_heap && let Some(v) = line.strip_prefix("Rss:") {
            kib += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
        }
    }
    kib
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// What one window measured.
struct Measured {
    targets: usize,
    probes_per_s: f64,
    cpu_per_1000: f64,
    user_per_1000: f64,
    core_share: f64,
    /// How busy the director's core was, in percent, when the prober had
    /// one to itself (see [`split`]).
    director_core: Option<f64>,
    drift: Vec<f64>,
    busiest: f64,
}

impl Measured {
    fn line(&self) -> String {
        let pct = |p: f64| 100.0 * percentile(&self.drift, p);
        let core = self.director_core.map_or(String::new(), |busy| {
            format!(
                " (the director's core, CPU {}, busy {busy:.1}%)",
                split::DIRECTOR_CPU
            )
        });
        format!(
            "{} targets probed, {:.0} probes/s; CPU {:.3} s per 1,000 probes ({:.3} s user) = {:.1}% of one core{core}; \
             interval drift p50 {:.2}% p99 {:.2}% max {:.2}% (goal max 10%); busiest 10 ms slot {:.2}x the mean",
            self.targets,
            self.probes_per_s,
            self.cpu_per_1000,
            self.user_per_1000,
            self.core_share,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            self.busiest
        )
    }
}

/// Waits out the warm-up and until each of the `targets` has been probed
/// (a prober in a slow guest takes longer to start).
async fn warm_up(arrivals: &Arrivals, targets: usize) {
    arrivals.lock().unwrap().clear();
    tokio::time::sleep(WARMUP).await;
    let started = Instant::now();
    loop {
        let probed = arrivals.lock().unwrap().len();
        if probed >= targets {
            return;
        }
        assert!(
            started.elapsed() < START_LIMIT,
            "{probed} of {targets} targets probed {} s after the warm-up",
            START_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After the [`warm_up`], counts probes
/// (as the servers saw them) and CPU (`cpu` returns the prober's seconds
/// so far; with `split`, the director's core too) over the window.
async fn measure(
    cpu: impl Fn() -> (f64, f64),
    arrivals: &Arrivals,
    split: Option<&Split>,
    targets: usize,
) -> Measured {
    warm_up(arrivals, targets).await;
    let director_ticks = || split.map(|_| split::CoreTicks::read(split::DIRECTOR_CPU));
    let (cpu0, core0, t0) = (cpu(), director_ticks(), Instant::now());
    arrivals.lock().unwrap().clear();
    tokio::time::sleep(WINDOW).await;
    let (cpu1, core1, elapsed) = (cpu(), director_ticks(), t0.elapsed());
    let seen = std::mem::take(&mut *arrivals.lock().unwrap());
    let probes: usize = seen.values().map(Vec::len).sum();
    let secs = elapsed.as_secs_f64();
    let (user, cpu) = (cpu1.0 - cpu0.0, cpu1.0 + cpu1.1 - cpu0.0 - cpu0.1);
    // Interval drift: each gap between a target's probes against 1 s.
    let mut drift: Vec<f64> = seen
        .values()
        .flat_map(|v| {
            v.windows(2)
                .map(|w| ((w[1] - w[0]).as_secs_f64() - 1.0).abs())
        })
        .collect();
    drift.sort_by(f64::total_cmp);
    // Evenness: probe starts per 10 ms slot of the second, max over mean.
    let mut slots = [0usize; 100];
    for at in seen.values().flatten() {
        let offset = (*at - t0).as_secs_f64().fract();
        slots[(offset * 100.0) as usize % 100] += 1;
    }
    let mean = probes as f64 / 100.0;
    Measured {
        targets: seen.len(),
        probes_per_s: probes as f64 / secs,
        cpu_per_1000: cpu / (probes as f64 / 1000.0),
        user_per_1000: user / (probes as f64 / 1000.0),
        core_share: 100.0 * cpu / secs,
        director_core: core0.zip(core1).map(|(a, b)| a.busy_percent_until(&b)),
        drift,
        busiest: *slots.iter().max().unwrap() as f64 / mean,
    }
}

/// A command running `program`: on loopback as it is; with `split`, in the
/// director's namespace on the director's core.
fn prober_command(program: &Path, split: Option<&Split>) -> Command {
    match split {
        None => Command::new(program),
        Some(split) => split.on_director(program),
    }
}

/// Where `split` puts the targets.
fn place_of(split: Option<&Split>) -> Place {
    match split {
        None => Place::Loopback,
        Some(_) => Place::Namespaces,
    }
}

/// A release ipvsd with a table of `addresses` × 100 targets placed at
/// `place`, and a release checkd following it as the unit runs it, started
/// by `command`: (ipvsd, checkd).
fn start_checkd(
    check: &str,
    place: Place,
    addresses: u8,
    mut command: Command,
) -> (Daemon, Daemon) {
    let dir = Path::new(DIR);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let config = ipvsd_config(check, place, addresses);
    std::fs::write(dir.join("ipvsd.yaml"), config).unwrap();
    let ipvsd_socket = dir.join("ipvsd.sock");
    let checkd_socket = dir.join("checkd.sock");
    let mut ipvsd = Daemon::start_logging(
        "ipvsd",
        &[
            "--listen",
            ipvsd_socket.to_str().unwrap(),
            "--config",
            dir.join("ipvsd.yaml").to_str().unwrap(),
        ],
        &dir.join("ipvsd.log"),
    );
    ipvsd.wait_for_socket(&ipvsd_socket);
    command
        .args(["--listen", checkd_socket.to_str().unwrap()])
        .args(["--ipvsd-socket", ipvsd_socket.to_str().unwrap()])
        .envs([("RUST_LOG", "warn"), ("MALLOC_ARENA_MAX", "1")]);
    let mut checkd = Daemon::spawn_logging("checkd", command, &dir.join("checkd.log"));
    checkd.wait_for_socket(&checkd_socket);
    (ipvsd, checkd)
}

/// checkd on `addresses` × 100 targets placed as `split` says; prints and
/// returns the window's figures, then those of a window after a stall.
async fn run_checkd(
    check: &str,
    arrivals: &Arrivals,
    split: Option<&Split>,
    addresses: u8,
) -> Measured {
    let targets = usize::from(addresses) * usize::from(PORTS);
    let command = prober_command(&binary("checkd"), split);
    let (ipvsd, checkd) = start_checkd(check, place_of(split), addresses, command);
    let pid = checkd.pid();
    let memory = || {
        let (rss, peak) = rss_kib(pid);
        format!(
            "RSS {:.1} MiB (peak {:.1}; malloc's heap {:.1})",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0,
            heap_kib(pid) as f64 / 1024.0
        )
    };
    let measured = measure(|| cpu_seconds(pid), arrivals, split, targets).await;
    println!("{check:>4} checkd: {}; {}", measured.line(), memory());
    stall(pid).await;
    let after = measure(|| cpu_seconds(pid), arrivals, split, targets).await;
    println!(
        "{check:>4} checkd after a {} ms stall: {}; {}",
        STALL.as_millis(),
        after.line(),
        memory()
    );
    drop(checkd);
    drop(ipvsd);
    measured
}

/// Stops `pid` for [`STALL`], as a slow minute of a shared machine does:
/// every target due meanwhile is probed at once when it runs again.
async fn stall(pid: u32) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    tokio::time::sleep(STALL).await;
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
}

/// The floor prober (see [`floor`]) on the same targets, as a child
/// process placed as checkd was; prints and returns the window's figures.
async fn run_floor(arrivals: &Arrivals, split: Option<&Split>) -> Measured {
    let mut command = prober_command(&std::env::current_exe().unwrap(), split);
    floor::ask(&mut command, place_of(split).name(), ADDRESSES);
    let mut child = command.spawn().unwrap();
    let targets = usize::from(ADDRESSES) * usize::from(PORTS);
    let measured = measure(|| cpu_seconds(child.id()), arrivals, split, targets).await;
    let (rss, _) = rss_kib(child.id());
    println!(
        "http floor:  {}; RSS {:.1} MiB",
        measured.line(),
        rss as f64 / 1024.0
    );
    child.kill().unwrap();
    child.wait().unwrap();
    measured
}

/// checkd with TCP and HTTP checks, then the floor, on targets placed as
/// `split` says; prints each window and the ratios.
async fn run_place(arrivals: &Arrivals, split: Option<&Split>, only: Option<&str>) {
    let targets = place_of(split).targets(ADDRESSES);
    let listeners = match split {
        None => bind(&targets),
        Some(split) => split.in_reals(|| bind(&targets)),
    };
    // Closed at the end: the next place's 10,000 need the descriptors.
    let _servers = serve(arrivals, listeners);
    match split {
        None => println!(
            "checkd, {} targets on loopback at a 1 s interval, measured over {} s:",
            targets.len(),
            WINDOW.as_secs()
        ),
        Some(_) => println!(
            "checkd, {} targets on namespace addresses at a 1 s interval, measured over {} s \
             (the prober alone on CPU {}; the servers, and their side of TCP, on CPU {}):",
            targets.len(),
            WINDOW.as_secs(),
            split::DIRECTOR_CPU,
            split::REALS_CPU
        ),
    }
    for check in ["tcp", "http"] {
        if only.is_some_and(|o| o != check) {
            continue;
        }
        let checkd = run_checkd(check, arrivals, split, ADDRESSES).await;
        if check == "http" {
            let floor = run_floor(arrivals, split).await;
            println!(
                "CPU per probe, checkd / floor: {:.2}x (user time: checkd {:.3} s, floor {:.3} s per 1,000 probes)",
                checkd.cpu_per_1000 / floor.cpu_per_1000,
                checkd.user_per_1000,
                floor.user_per_1000
            );
            // checkd's own cost: what it takes above the kernel's part,
            // in percent of a core at 10,000 probes/s, from each prober's
            // percent-seconds of a core per probe.
            let own = |checkd_per_probe: f64, floor_per_probe: f64| {
                10_000.0 * (checkd_per_probe - floor_per_probe)
            };
            // CPU seconds per 1,000 probes -> percent-seconds per probe.
            let per_probe = |cpu_per_1000: f64| cpu_per_1000 * 0.1;
            println!(
                "checkd over the floor: {:.1}% of one core at 10,000 probes/s",
                own(
                    per_probe(checkd.cpu_per_1000),
                    per_probe(floor.cpu_per_1000)
                )
            );
            if let (Some(c), Some(f)) = (checkd.director_core, floor.director_core) {
                // Percent busy at so many probes/s -> percent-seconds per probe.
                let (c, f) = (c / checkd.probes_per_s, f / floor.probes_per_s);
                println!(
                    "The director's core busy per probe, checkd / floor: {:.2}x; checkd over the floor: {:.1}% of it at 10,000 probes/s",
                    c / f,
                    own(c, f)
                );
            }
        }
    }
}

/// keepalived's config: the same services and reals, each with `HTTP_GET`
/// every second (`delay_loop 1`).
fn keepalived_config(addresses: u8) -> String {
    let mut out = String::from("global_defs {\n    router_id tandem_bench\n}\n");
    for p in 0..PORTS {
        out.push_str(&format!(
            "virtual_server 203.0.113.10 {} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
            10_000 + p
        ));
        for a in 0..addresses {
            let t = Place::Loopback.target(a, p);
            out.push_str(&format!(
                "    real_server {} {} {{\n        weight 1\n        HTTP_GET {{\n            url {{\n                path /\n                status_code 200\n            }}\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n",
                t.ip(),
                t.port()
            ));
        }
        out.push_str("}\n");
    }
    out
}

/// User and system CPU of `pid` and its children (keepalived forks its
/// checker).
fn tree_cpu_seconds(pid: u32) -> (f64, f64) {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .map(tree_cpu_seconds)
        .fold(cpu_seconds(pid), |(u, s), (cu, cs)| (u + cu, s + cs))
}

/// keepalived's checker alone (`--check`) on the same targets.
async fn run_keepalived(arrivals: &Arrivals, addresses: u8) -> Measured {
    let dir = Path::new(DIR);
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("keepalived.conf");
    std::fs::write(&config, keepalived_config(addresses)).unwrap();
    let log = std::fs::File::create(dir.join("keepalived.log")).unwrap();
    let mut keepalived = std::process::Command::new("keepalived")
        .args(["--dont-fork", "--check", "--log-console", "--use-file"])
        .arg(&config)
        .arg("--pid")
        .arg(dir.join("keepalived.pid"))
        .arg("--checkers_pid")
        .arg(dir.join("checkers.pid"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting keepalived");
    let pid = keepalived.id();
    let targets = usize::from(addresses) * usize::from(PORTS);
    let measured = measure(|| tree_cpu_seconds(pid), arrivals, None, targets).await;
    println!("http keepalived: {}", measured.line());
    let _ = keepalived.kill();
    let _ = keepalived.wait();
    let _ = std::process::Command::new("ipvsadm").arg("-C").status();
    measured
}

/// In the VM: checkd, then keepalived, on the same targets; the ratio.
async fn peer_in_guest() {
    let arrivals: Arrivals = Arc::default();
    let _servers = serve(&arrivals, bind(&Place::Loopback.targets(VM_ADDRESSES)));
    println!(
        "In the kernel VM (TCG), {} targets at a 1 s interval, {} s windows:",
        usize::from(VM_ADDRESSES) * usize::from(PORTS),
        WINDOW.as_secs()
    );
    let checkd = run_checkd("http", &arrivals, None, VM_ADDRESSES).await;
    let keepalived = run_keepalived(&arrivals, VM_ADDRESSES).await;
    println!(
        "CPU per probe, keepalived / checkd: {:.1}x (user time alone: {:.1}x)",
        keepalived.cpu_per_1000 / checkd.cpu_per_1000,
        keepalived.user_per_1000 / checkd.user_per_1000
    );
}

/// Installs Debian's `package` if `program` is missing; false if it
/// cannot be.
fn have(program: &str, package: &str) -> bool {
    let found = || {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok()
    };
    if found() {
        return true;
    }
    println!("{program} is missing: apt-get install {package}");
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    installed && found()
}

/// checkd's and the floor's user-space instructions per HTTP probe, each
/// under callgrind on the same loopback targets (see [`instructions`]).
async fn count_instructions(arrivals: &Arrivals) {
    if !have("valgrind", "valgrind") {
        assert!(
            !rustix::process::geteuid().is_root(),
            "valgrind could not be installed: instructions cannot be counted"
        );
        println!("SKIPPED the instruction count: valgrind is missing (root installs it)");
        return;
    }
    let addresses = instructions::ADDRESSES;
    let targets = Place::Loopback.targets(addresses);
    let _servers = serve(arrivals, bind(&targets));
    println!(
        "Instructions in user space (callgrind), {} targets on loopback at a 1 s interval, over {} s:",
        targets.len(),
        WINDOW.as_secs()
    );
    let dir = Path::new(DIR);
    let out = dir.join("callgrind.checkd");
    let command = instructions::command(&binary("checkd"), &out);
    let (ipvsd, checkd) = start_checkd("http", Place::Loopback, addresses, command);
    let checkd_count = count(&checkd, &out, arrivals, targets.len()).await;
    stop_counted(checkd);
    drop(ipvsd);
    let out = dir.join("callgrind.floor");
    let mut command = instructions::command(&std::env::current_exe().unwrap(), &out);
    floor::ask(&mut command, Place::Loopback.name(), addresses);
    let floor = Daemon::spawn_logging("floor", command, &dir.join("floor.log"));
    let floor_count = count(&floor, &out, arrivals, targets.len()).await;
    stop_counted(floor);
    println!(
        "http instructions per probe: checkd {checkd_count:.0}, floor {floor_count:.0}; checkd / floor {:.1}x",
        checkd_count / floor_count
    );
}

/// Stops a prober under valgrind with SIGTERM, not a kill: valgrind then
/// removes its pipes in /tmp.
fn stop_counted(mut prober: Daemon) {
    prober.signal(rustix::process::Signal::TERM);
    prober.wait_exit(Duration::from_secs(10));
}

/// After the [`warm_up`], the instructions `prober` (under callgrind)
/// runs over the window, per probe the servers saw.
async fn count(prober: &Daemon, out: &Path, arrivals: &Arrivals, targets: usize) -> f64 {
    let pid = prober.pid();
    warm_up(arrivals, targets).await;
    instructions::start(pid);
    arrivals.lock().unwrap().clear();
    tokio::time::sleep(WINDOW).await;
    instructions::dump(pid);
    let probes: usize = arrivals.lock().unwrap().values().map(Vec::len).sum();
    instructions::counted(out) as f64 / probes as f64
}

fn main() {
    // 10,000 listeners plus the connections being probed.
    let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current = limit.maximum;
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    if let Some((place, addresses)) = floor::asked() {
        let place = Place::from_name(&place).unwrap();
        floor::run(&place.targets(addresses), Duration::from_secs(1));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(IN_VM).is_some() {
        runtime.block_on(peer_in_guest());
        return;
    }
    let only = std::env::var("CHECKD_BENCH_ONLY").ok();
    let place_asked = std::env::var("CHECKD_BENCH_PLACE").ok();
    let counted = only.as_deref().is_none_or(|o| o == "http")
        && place_asked.as_deref().is_none_or(|p| p == "callgrind");
    if place_asked.as_deref() == Some("callgrind") && !counted {
        println!(
            "SKIPPED the instruction count: it counts http probes, and CHECKD_BENCH_ONLY asks for others"
        );
    }
    let places = match place_asked.as_deref() {
        Some("callgrind") => vec![],
        Some(name) => vec![Place::from_name(name).unwrap_or_else(|| {
            panic!("CHECKD_BENCH_PLACE={name}: it is loopback, namespaces or callgrind")
        })],
        None if rustix::process::geteuid().is_root() => vec![Place::Loopback, Place::Namespaces],
        None => {
            println!("SKIPPED the namespace run: it needs root");
            vec![Place::Loopback]
        }
    };
    runtime.block_on(async {
        let arrivals: Arrivals = Arc::default();
        for place in places {
            let split = (place == Place::Namespaces).then(|| Split::new(ADDRESSES));
            run_place(&arrivals, split.as_ref(), only.as_deref()).await;
        }
        if counted {
            count_instructions(&arrivals).await;
        }
    });
    drop(runtime);
    if std::env::var_os("CHECKD_BENCH_NO_PEER").is_some() {
        return;
    }
    tandem_integration_tests::require_root();
    assert!(
        have("keepalived", "keepalived"),
        "keepalived could not be installed: the peer cannot run"
    );
    let out = tandem_integration_tests::guest::run_self_in_vm_with(
        "--bench",
        &["ipvsd", "checkd"],
        Duration::from_secs(600),
    );
    print!("{}", out.output);
    assert_eq!(out.status, 0, "the peer benchmark failed in the VM");
}
