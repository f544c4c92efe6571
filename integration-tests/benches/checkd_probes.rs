//! Benchmark: checkd probing 10,000 targets, each a real listener on
//! loopback (100 addresses x 100 ports, served by this process), at a 1 s
//! interval, with TCP and then HTTP checks. Targets come from a real ipvsd
//! (STOPPED: the host has no IPVS, which checkd does not need). Prints,
//! over a 10 s window: probes/s, checkd's CPU seconds per 1,000 probes and
//! its share of one core, its RSS, and the spread of probe start times as
//! the servers saw them (each target's interval drift; how evenly probes
//! fall across the second). Asserts nothing about speed.
//!
//! Run: `cargo build --release --bins && cargo bench -p
//! tandem-integration-tests --bench checkd_probes` (`CHECKD_BENCH_ONLY=http`
//! runs one check type).

#![allow(
    clippy::unwrap_used,
    reason = "benchmark: a panic is the failure report"
)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_integration_tests::process::{Daemon, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

const ADDRESSES: u8 = 100;
const PORTS: u16 = 100;
const FIRST_PORT: u16 = 20_000;
const WARMUP: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(10);
const DIR: &str = "/tmp/checkd-bench";

type Arrivals = Arc<Mutex<HashMap<SocketAddr, Vec<Instant>>>>;

fn target(a: u8, p: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(127, 0, 0, a + 1).into(), FIRST_PORT + p)
}

/// One listener per target; each connection's arrival is logged by the
/// address it reached; HTTP requests get a small 200.
async fn serve(arrivals: Arrivals) {
    for a in 0..ADDRESSES {
        for p in 0..PORTS {
            let addr = target(a, p);
            let listener = TcpListener::bind(addr).await.unwrap();
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
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
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                                    .await;
                                return;
                            }
                        }
                    });
                }
            });
        }
    }
}

fn ipvsd_config(check: &str) -> String {
    let mut out = String::from("virtual_services:\n");
    for p in 0..PORTS {
        out.push_str(&format!(
            "  - address: 198.51.100.10\n    port: {}\n    forward: masq\n    check: {{type: {check}, interval: 1s, timeout: 800ms}}\n    reals:\n",
            10_000 + p
        ));
        for a in 0..ADDRESSES {
            let t = target(a, p);
            out.push_str(&format!(
                "      - {{address: {}, port: {}}}\n",
                t.ip(),
                t.port()
            ));
        }
    }
    out
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn run(check: &str, arrivals: &Arrivals) {
    let dir = Path::new(DIR);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ipvsd.yaml"), ipvsd_config(check)).unwrap();
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
    arrivals.lock().unwrap().clear();
    let mut checkd = Daemon::start_logging_env(
        "checkd",
        &[
            "--listen",
            checkd_socket.to_str().unwrap(),
            "--ipvsd-socket",
            ipvsd_socket.to_str().unwrap(),
        ],
        &dir.join("checkd.log"),
        &[("RUST_LOG", "warn"), ("MALLOC_ARENA_MAX", "1")],
    );
    checkd.wait_for_socket(&checkd_socket);
    tokio::time::sleep(WARMUP).await;

    let (cpu0, t0) = (cpu_seconds(checkd.pid()), Instant::now());
    arrivals.lock().unwrap().clear();
    tokio::time::sleep(WINDOW).await;
    let (cpu1, elapsed) = (cpu_seconds(checkd.pid()), t0.elapsed());
    let (rss, peak) = rss_kib(checkd.pid());
    let (rss, peak) = (rss as f64 / 1024.0, peak as f64 / 1024.0);
    let seen = std::mem::take(&mut *arrivals.lock().unwrap());

    let probes: usize = seen.values().map(Vec::len).sum();
    let secs = elapsed.as_secs_f64();
    let cpu = cpu1 - cpu0;
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
    let busiest = *slots.iter().max().unwrap() as f64;
    println!(
        "{check:>4}: {} targets probed, {:.0} probes/s; checkd CPU {:.3} s per 1,000 probes = {:.1}% of one core; \
         RSS {:.1} MiB (peak {:.1}); interval drift p50 {:.2}% p99 {:.2}% max {:.2}% (goal max 10%); \
         busiest 10 ms slot {:.2}x the mean",
        seen.len(),
        probes as f64 / secs,
        cpu / (probes as f64 / 1000.0),
        100.0 * cpu / secs,
        rss,
        peak,
        100.0 * percentile(&drift, 0.5),
        100.0 * percentile(&drift, 0.99),
        100.0 * drift.last().copied().unwrap_or(f64::NAN),
        busiest / mean,
    );
    drop(checkd);
    drop(ipvsd);
}

fn main() {
    // 10,000 listeners plus the connections being probed.
    let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current = limit.maximum;
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let arrivals: Arrivals = Arc::default();
        serve(arrivals.clone()).await;
        println!(
            "checkd, {} targets on loopback at a 1 s interval, measured over {} s:",
            usize::from(ADDRESSES) * usize::from(PORTS),
            WINDOW.as_secs()
        );
        let only = std::env::var("CHECKD_BENCH_ONLY").ok();
        for check in ["tcp", "http"] {
            if only.as_deref().is_some_and(|o| o != check) {
                continue;
            }
            run(check, &arrivals).await;
        }
    });
}
