//! The namespace run: the director's core measured alone, as on a real
//! director, whose reals' TCP runs on the reals.
//!
//! On loopback the kernel does both ends of every connection in the
//! prober's system calls, so the servers' side is charged to the prober.
//! Here the prober runs in a director namespace pinned to
//! [`DIRECTOR_CPU`], and the servers in a reals namespace at the other end
//! of a veth pair, with this process pinned to [`REALS_CPU`]. Receive
//! packet steering on each veth end hands every packet's receive to its
//! own side's core: what reaches the reals is processed on theirs, what
//! reaches the director on the director's. The director's core is then
//! read from `/proc/stat`, interrupts and softirqs included.

use std::path::Path;
use std::process::Command;

use rustix::thread::{CpuSet, sched_setaffinity};
use tandem_integration_tests::netns::{Netns, run};

/// The first three octets of the reals' addresses (`.1` to `.addresses`).
pub const REALS: [u8; 3] = [198, 51, 100];
/// The director's address on the same link.
const DIRECTOR: &str = "198.51.100.254/24";
/// The core the prober has to itself.
pub const DIRECTOR_CPU: usize = 0;
/// The core of the servers, this process and everything else.
pub const REALS_CPU: usize = 1;

/// The two namespaces and their link; deleted on drop.
pub struct Split {
    director: Netns,
    reals: Netns,
}

impl Split {
    /// The namespaces, the link, `addresses` reals' addresses and the
    /// steering; pins this process (and what it starts after) to
    /// [`REALS_CPU`].
    pub fn new(addresses: u8) -> Self {
        let director = Netns::new("bench-director").unwrap();
        let reals = Netns::new("bench-reals").unwrap();
        run(
            "ip",
            &[
                "link",
                "add",
                "dir0",
                "netns",
                director.name(),
                "type",
                "veth",
                "peer",
                "name",
                "reals0",
                "netns",
                reals.name(),
            ],
        )
        .unwrap();
        director
            .ip(&["addr", "add", DIRECTOR, "dev", "dir0"])
            .unwrap();
        for a in 1..=addresses {
            let [x, y, z] = REALS;
            let cidr = format!("{x}.{y}.{z}.{a}/24");
            reals.ip(&["addr", "add", &cidr, "dev", "reals0"]).unwrap();
        }
        director.ip(&["link", "set", "dir0", "up"]).unwrap();
        reals.ip(&["link", "set", "reals0", "up"]).unwrap();
        steer(&director, "dir0", DIRECTOR_CPU);
        steer(&reals, "reals0", REALS_CPU);
        pin_this_process(REALS_CPU);
        Self { director, reals }
    }

    /// Runs `f` in the reals' namespace (sockets it opens stay there).
    pub fn in_reals<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.reals.enter(f).unwrap()
    }

    /// A command running `program` in the director's namespace on
    /// [`DIRECTOR_CPU`] (`ip netns exec` and `taskset` exec it: its pid is
    /// the child's).
    pub fn on_director(&self, program: &Path) -> Command {
        let mut command = self.director.command("taskset");
        command
            .args(["--cpu-list", &DIRECTOR_CPU.to_string()])
            .arg(program);
        command
    }
}

/// Receive packet steering: packets arriving on `ifname` in `ns` are
/// processed on `cpu`.
fn steer(ns: &Netns, ifname: &str, cpu: usize) {
    let mask = format!("{:x}", 1u64 << cpu);
    let path = format!("/sys/class/net/{ifname}/queues/rx-0/rps_cpus");
    // `ip netns exec` mounts the namespace's own /sys.
    let status = ns
        .command("sh")
        .args(["-c", &format!("echo {mask} > {path}")])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "setting {path} to {mask} in {}",
        ns.name()
    );
}

/// Pins every thread of this process to `cpu`; threads started later
/// inherit it, and so do child processes.
fn pin_this_process(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let tid = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        // A thread may have ended since the listing.
        if let Some(tid) = rustix::thread::Pid::from_raw(tid) {
            let _ = sched_setaffinity(Some(tid), &set);
        }
    }
}

/// One core's time from `/proc/stat`, in ticks.
pub struct CoreTicks {
    busy: u64,
    total: u64,
}

impl CoreTicks {
    /// Core `cpu`'s counters now.
    pub fn read(cpu: usize) -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let label = format!("cpu{cpu}");
        let fields: Vec<u64> = stat
            .lines()
            .find_map(|l| l.strip_prefix(&label).filter(|rest| rest.starts_with(' ')))
            .unwrap_or_else(|| panic!("no {label} line in /proc/stat"))
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is in user).
        let total: u64 = fields.iter().take(8).sum();
        Self {
            busy: total - fields[3] - fields[4],
            total,
        }
    }

    /// The share of time the core was busy from `self` to `later`, in percent.
    pub fn busy_percent_until(&self, later: &Self) -> f64 {
        100.0 * (later.busy - self.busy) as f64 / (later.total - self.total) as f64
    }
}
