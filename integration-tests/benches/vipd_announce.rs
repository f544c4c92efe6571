//! Benchmark: time from `Transition(ACTIVE)` to the first gratuitous ARP on
//! the wire, with 16 VIPs, seen by a capture in another namespace on the
//! same bridge. 20 trials (ACTIVE, then STANDBY to reset), median and max.
//! The clock starts just before the RPC is sent, so the figure includes
//! the gRPC round over the Unix socket.
//!
//! Peer in the same run, alternating with tandem: the seed's way, what
//! Heartbeat's `IPaddr` resource does — `ip addr add` for the VIP, then
//! `arping -U` (iputils) — for one VIP, timed the same way. As root it
//! installs `iputils-arping` when missing. Asserts nothing about speed.
//!
//! Run: `cargo build --release --bins && cargo bench -p
//! tandem-integration-tests --bench vipd_announce`.

#![allow(
    clippy::unwrap_used,
    reason = "benchmark: a panic is the failure report"
)]

use std::net::Ipv4Addr;
use std::time::Duration;

use tandem_integration_tests::bench::summary;
use tandem_integration_tests::capture::Capture;
use tandem_integration_tests::netns::{Host, Lan};
use tandem_integration_tests::process::{Daemon, socket_in};
use tandem_proto::resource::v1 as rpb;
use tokio::time::Instant;

const VIPS: u8 = 16;
const TRIALS: usize = 20;
const FIRST_VIP: u8 = 100;

fn vip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, FIRST_VIP + i)
}

/// The first ARP frame at or after `t0` whose sender IP is one of `vips`;
/// waits up to a second for it.
fn first_garp(capture: &Capture, t0: Instant, vips: &[Ipv4Addr]) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let hit = capture
            .frames()
            .into_iter()
            .filter(|f| f.at >= t0)
            .find(|f| {
                f.arp()
                    .is_some_and(|a| vips.contains(&Ipv4Addr::from(a.sender_ip)))
            });
        if let Some(f) = hit {
            return Some(f.at - t0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The seed's way for one VIP: `ip addr add`, then `arping -U`.
fn seed_way(director: &Host, capture: &Capture) -> Duration {
    let vip = Ipv4Addr::new(198, 51, 100, 200);
    let cidr = format!("{vip}/24");
    let t0 = Instant::now();
    director
        .ns
        .ip(&["addr", "add", &cidr, "dev", "eth0"])
        .unwrap();
    let status = director
        .ns
        .command("arping")
        .args(["-q", "-U", "-c", "1", "-I", "eth0", &vip.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "arping failed");
    let at = first_garp(capture, t0, &[vip]).expect("the peer's gratuitous ARP");
    director
        .ns
        .ip(&["addr", "del", &cidr, "dev", "eth0"])
        .unwrap();
    at
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tandem_integration_tests::require_root();
    let lan = Lan::new("vipbench").unwrap();
    let director = lan.host("dir", "198.51.100.11/24").unwrap();
    let watcher = lan.host("watch", "198.51.100.50/24").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "state_file: {}\nannounce:\n  count: 1\naddresses:\n",
        dir.path().join("vipd.state").display()
    );
    for i in 0..VIPS {
        config.push_str(&format!(
            "  - address: {}/24\n    interface: eth0\n",
            vip(i)
        ));
    }
    let _vipd = Daemon::start_configured(&director.ns, "vipd", dir.path(), &config);
    let socket = socket_in(dir.path(), "vipd");
    let channel = tandem_daemon::client::connect_unix(&socket).await.unwrap();
    let mut client = rpb::resource_client::ResourceClient::new(channel);
    let peer = tandem_integration_tests::bench::peer_available("arping", "iputils-arping");
    let capture = Capture::start(&watcher.ns).unwrap();
    let vips: Vec<Ipv4Addr> = (0..VIPS).map(vip).collect();

    let (mut first, mut done, mut seed) = (Vec::new(), Vec::new(), Vec::new());
    let mut epoch = 0;
    for _ in 0..TRIALS {
        epoch += 1;
        let t0 = Instant::now();
        client
            .transition(rpb::TransitionRequest {
                target: rpb::State::Active.into(),
                epoch,
            })
            .await
            .unwrap();
        done.push(t0.elapsed());
        first.push(first_garp(&capture, t0, &vips).expect("a gratuitous ARP"));
        epoch += 1;
        client
            .transition(rpb::TransitionRequest {
                target: rpb::State::Standby.into(),
                epoch,
            })
            .await
            .unwrap();
        if peer {
            seed.push(seed_way(&director, &capture));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(capture);

    println!("\nvipd: Transition(ACTIVE) with {VIPS} VIPs, {TRIALS} trials");
    let ours = summary("first gratuitous ARP on the wire", first);
    summary("Transition returned (all announced)", done);
    if peer {
        let theirs = summary("peer: ip addr add + arping -U (1 VIP)", seed);
        println!(
            "ratio, time to first announcement, peer/vipd: {:.1}x",
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    } else {
        println!("peer skipped: arping is not installed (run as root to install it)");
    }
}
