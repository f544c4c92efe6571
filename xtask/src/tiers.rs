//! `cargo xtask test`: every test tier, counted.
//!
//! Tiers are nextest filtersets over the workspace's test binaries:
//! unit (pure logic), process (real daemon processes and gRPC clients),
//! netns (root: network namespaces on the host kernel), vm (root: a qemu VM
//! with a Debian kernel that has IPVS). Without root the last two are not
//! run and are reported as failed, so nothing passes by skipping.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

use crate::system;

struct Tier {
    name: &'static str,
    filter: &'static str,
    needs_root: bool,
    threads: Option<&'static str>,
}

const TIERS: &[Tier] = &[
    Tier {
        name: "unit",
        filter: "not binary_id(/::(daemon|netns|vm)_/)",
        needs_root: false,
        threads: None,
    },
    Tier {
        name: "process",
        filter: "binary_id(/::daemon_/)",
        needs_root: false,
        threads: None,
    },
    Tier {
        name: "netns",
        filter: "binary_id(/::netns_/)",
        needs_root: true,
        threads: None,
    },
    Tier {
        name: "vm",
        filter: "binary_id(/::vm_/)",
        needs_root: true,
        threads: Some("1"),
    },
];

/// Counts from one nextest summary line.
#[derive(Default, Clone, Copy)]
struct Counts {
    passed: u64,
    failed: u64,
    skipped: u64,
}

/// Parses `Summary [ 1.2s] 13 tests run: 12 passed, 1 failed, 0 skipped`
/// (or `1 test run: …`).
fn parse_summary(line: &str) -> Option<Counts> {
    let (_, tail) = line.split_once(" run:")?;
    let mut counts = Counts::default();
    for part in tail.split(',') {
        let mut words = part.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next()? {
            "passed" => counts.passed += n,
            "skipped" => counts.skipped += n,
            // failed, timed out, leaky-failed, exec failed…
            _ => counts.failed += n,
        }
    }
    Some(counts)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run_tier(tier: &Tier, root: &Path, python: Option<&Path>) -> anyhow::Result<Counts> {
    println!("\n== tier {}: {}", tier.name, tier.filter);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--no-tests=warn",
        ])
        .args(["-E", tier.filter])
        .stderr(Stdio::piped());
    if let Some(threads) = tier.threads {
        cmd.args(["--test-threads", threads]);
    }
    if let Some(python) = python {
        cmd.env("TANDEM_PYTHON", python);
    }
    let mut child = cmd.spawn().context("starting cargo nextest")?;
    let stderr = child.stderr.take().context("nextest's stderr")?;
    let mut counts = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading nextest's output")?;
        eprintln!("{line}");
        if line.trim_start().starts_with("Summary") {
            counts = parse_summary(&line);
        }
    }
    let status = child.wait().context("waiting for nextest")?;
    let mut counts = counts.unwrap_or_default();
    if !status.success() && counts.failed == 0 {
        // A build failure or a crash before any summary: count the tier as failed.
        counts.failed = 1;
    }
    Ok(counts)
}

/// Runs every tier and prints the table; fails if anything failed.
pub fn run() -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let is_root = system::is_root();
    if is_root {
        system::ensure_packages()?;
    } else {
        println!(
            "xtask: not root: the netns and vm tiers will be reported as failed (run as root)"
        );
    }
    system::ensure_nextest()?;
    let python = system::ensure_python(&root.join("target")).ok();
    if python.is_none() {
        println!("xtask: no Python with grpcio; the foreign-client test will fail and say why");
    }
    system::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--workspace", "--bins"]),
    )?;

    let mut rows = Vec::new();
    for tier in TIERS {
        let counts = if tier.needs_root && !is_root {
            println!(
                "\n== tier {}: NOT RUN: needs root (network namespaces / the VM)",
                tier.name
            );
            Counts {
                failed: 1,
                ..Counts::default()
            }
        } else {
            run_tier(tier, &root, python.as_deref())?
        };
        rows.push((tier.name, counts));
    }

    println!(
        "\n{:<8} {:>7} {:>7} {:>8}",
        "tier", "passed", "failed", "skipped"
    );
    let mut total = Counts::default();
    for (name, c) in &rows {
        println!("{name:<8} {:>7} {:>7} {:>8}", c.passed, c.failed, c.skipped);
        total.passed += c.passed;
        total.failed += c.failed;
        total.skipped += c.skipped;
    }
    println!(
        "{} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    Ok(if total.failed == 0 && total.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_are_counted() {
        let c =
            parse_summary("     Summary [   0.140s] 13 tests run: 12 passed, 1 failed, 2 skipped")
                .unwrap();
        assert_eq!((c.passed, c.failed, c.skipped), (12, 1, 2));
        let c =
            parse_summary("Summary [ 9s] 3 tests run: 1 passed, 1 timed out, 1 failed, 0 skipped")
                .unwrap();
        assert_eq!((c.passed, c.failed), (1, 2));
        let c = parse_summary("Summary [ 5.7s] 1 test run: 1 passed, 0 skipped").unwrap();
        assert_eq!((c.passed, c.failed), (1, 0));
        assert!(parse_summary("PASS [0.1s] foo").is_none());
    }
}
