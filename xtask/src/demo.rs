//! `cargo xtask demo`: the seed's resource group, driven through the
//! resource-ordering contract.
//!
//! The seed's `haresources` line — `IPaddr::VIP ipvsadm ldirectord` — is
//! tandem's group vipd → ipvsd → checkd. This demo starts the three real
//! daemons on private sockets and walks the group the way hbd will: up in
//! order, down in reverse, a stale epoch refused. Each daemon's host-side
//! work (addresses, IPVS table, probes) arrives with its own issue; until
//! then their transitions only record state, and the demo says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::system;

/// The group in `haresources` order.
const GROUP: &[&str] = &["vipd", "ipvsd", "checkd"];

struct Running {
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin(root: &Path, name: &str) -> PathBuf {
    root.join("target/debug").join(name)
}

fn socket(dir: &Path, daemon: &str) -> PathBuf {
    dir.join(format!("{daemon}.sock"))
}

/// Runs tandemctl against `daemon`, echoing the command and its output.
fn ctl(root: &Path, dir: &Path, daemon: &str, args: &[&str]) -> anyhow::Result<bool> {
    let sock = socket(dir, daemon);
    println!("$ tandemctl --socket {} {}", sock.display(), args.join(" "));
    let out = Command::new(bin(root, "tandemctl"))
        .arg("--socket")
        .arg(&sock)
        .args(args)
        .output()
        .context("running tandemctl")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(out.status.success())
}

fn wait_for(sock: &Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not come up", sock.display())
}

fn step(title: &str) {
    println!("\n### {title}");
}

/// Builds and runs the demo.
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("workspace root")?;
    system::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "-q",
        "--workspace",
        "--bins",
    ]))?;
    let dir = std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut running = Running {
        children: Vec::new(),
        dir: dir.clone(),
    };

    step("start the resource daemons (the seed's haresources: IPaddr ipvsadm ldirectord)");
    for daemon in GROUP {
        let sock = socket(&dir, daemon);
        println!("$ {daemon} --listen {}", sock.display());
        let child = Command::new(bin(&root, daemon))
            .arg("--listen")
            .arg(&sock)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {daemon}"))?;
        running.children.push(((*daemon).to_owned(), child));
        wait_for(&sock)?;
        ctl(&root, &dir, daemon, &["health"])?;
    }

    step("this node takes the group at epoch 1: STANDBY, then ACTIVE, in order");
    for target in ["standby", "active"] {
        for daemon in GROUP {
            if !ctl(&root, &dir, daemon, &["transition", target, "--epoch", "1"])? {
                bail!("{daemon} refused {target}");
            }
        }
    }

    step("asking again is a no-op (idempotent)");
    ctl(
        &root,
        &dir,
        "vipd",
        &["transition", "active", "--epoch", "1"],
    )?;

    step("a peer takes over at epoch 2: this node steps down in reverse order");
    for daemon in GROUP.iter().rev() {
        ctl(
            &root,
            &dir,
            daemon,
            &["transition", "standby", "--epoch", "2"],
        )?;
    }

    step("a stale hbd still at epoch 1 tries to make vipd ACTIVE: refused");
    if ctl(
        &root,
        &dir,
        "vipd",
        &["transition", "active", "--epoch", "1"],
    )? {
        bail!("vipd accepted a stale epoch");
    }

    step("status of the group");
    for daemon in GROUP {
        ctl(&root, &dir, daemon, &["status"])?;
    }

    step("stop: reverse order, then SIGTERM");
    for daemon in GROUP.iter().rev() {
        ctl(
            &root,
            &dir,
            daemon,
            &["transition", "stopped", "--epoch", "2"],
        )?;
    }
    for (name, child) in &mut running.children {
        system::run(
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
        )?;
        let status = child.wait()?;
        println!("{name} exited: {status}");
    }
    running.children.clear();

    println!(
        "\nNot built yet, so transitions above only record state: VIPs and ARP (vipd, issue 7), \
         the IPVS table (ipvsd, issue 5), probes (checkd, issue 6), heartbeats and failover \
         (hbd, issue 8)."
    );
    Ok(std::process::ExitCode::SUCCESS)
}
