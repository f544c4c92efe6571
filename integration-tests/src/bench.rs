//! What the benchmarks share: the peer tool installed on demand, and one
//! way of printing a median and a maximum.

use std::process::Command;
use std::time::Duration;

/// True if `program` is on the PATH; as root, installs Debian `package`
/// first when it is not (saying so).
pub fn peer_available(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found || !crate::is_root() {
        return found;
    }
    println!("{program} (the peer) is missing: apt-get install {package}");
    Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints `name`, the median and the maximum of `samples` in ms; returns
/// the median.
pub fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "{name:<48} median {:>8.3} ms   max {:>8.3} ms   (n={})",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        samples.len()
    );
    median
}
