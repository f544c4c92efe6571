//! What the test tiers need from the machine: Debian packages, cargo-nextest,
//! a Python venv with grpcio. Installs what is missing, after saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Debian packages the tiers use, and what for.
const PACKAGES: &[(&str, &str)] = &[
    (
        "iproute2",
        "ip netns / veth / bridge for the namespace tier",
    ),
    ("nftables", "packet loss and partitions in namespace tests"),
    ("socat", "serial pty pairs"),
    ("tcpdump", "captures in namespace tests"),
    (
        "qemu-system-x86",
        "the kernel VM tier (a Debian kernel with IPVS)",
    ),
    ("busybox-static", "the VM's initramfs"),
    ("kmod", "resolving kernel module dependencies for the VM"),
    ("ipvsadm", "the peer IPVS tool in the VM tier"),
    (
        "python3-venv",
        "a venv for the grpcio interoperability client",
    ),
];

/// Python packages of the foreign gRPC client test.
const PYTHON_PACKAGES: &[&str] = &["grpcio", "grpcio-health-checking", "grpcio-reflection"];

pub use tandem_integration_tests::is_root;

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Runs a command, failing with its name when it does not succeed.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Installs missing Debian packages (root only; says what and why first).
pub fn ensure_packages() -> anyhow::Result<()> {
    let missing: Vec<_> = PACKAGES.iter().filter(|(p, _)| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing missing Debian packages:");
    for (package, why) in &missing {
        println!("  {package:<16} {why}");
    }
    if !is_root() {
        bail!("installing packages needs root: run `cargo xtask test` as root");
    }
    let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Installs cargo-nextest if `cargo nextest` is not available.
pub fn ensure_nextest() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        println!("xtask: installing cargo-nextest (cargo install --locked)");
        run(Command::new("cargo").args(["install", "--locked", "cargo-nextest"]))?;
    }
    Ok(())
}

/// A venv under `target/` with grpcio, for the foreign-client test; returns its python.
pub fn ensure_python(target: &Path) -> anyhow::Result<PathBuf> {
    let venv = target.join("tandem-venv");
    let python = venv.join("bin/python3");
    let ready = Command::new(&python)
        .args(["-c", "import grpc, grpc_health, grpc_reflection"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(python);
    }
    println!(
        "xtask: creating {} with {}",
        venv.display(),
        PYTHON_PACKAGES.join(", ")
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(PYTHON_PACKAGES))?;
    Ok(python)
}
