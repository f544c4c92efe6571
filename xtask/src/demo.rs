//! `cargo xtask demo`: the seed's resource group, driven through the
//! resource-ordering contract.
//!
//! The seed's `haresources` line — `IPaddr::VIP ipvsadm ldirectord` — is
//! tandem's group vipd → ipvsd → checkd. This demo starts the three real
//! daemons on private sockets (ipvsd with the seed's cluster,
//! `deploy/config/ipvsd.yaml`; vipd in a director namespace on a bridge
//! with a client namespace) and walks the group the way hbd will: up in
//! order, down in reverse, a stale epoch refused. vipd puts the VIP on the
//! director's eth0 and the client learns it from the gratuitous ARP, and in
//! STANDBY hides it on lo as the seed's real-server scripts did;
//! `ipvsadm -Ln` shows the kernel table ipvsd programs, and checkd probes
//! the seed's real servers (HTTP servers the demo runs) and takes one out
//! when it stops serving.
//! It needs kernel IPVS: on a host without it
//! (like the build machines) it boots the test VM and runs there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tandem_integration_tests::netns::{Host, Lan};
use tandem_integration_tests::servers::HttpServer;

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

fn bin(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Set in the guest: the directory holding the staged binaries and config.
const DEMO_DIR: &str = "TANDEM_DEMO_DIR";
/// The binaries the demo runs.
const BINARIES: &[&str] = &["vipd", "ipvsd", "checkd", "tandemctl"];

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

/// Runs `ip -n <ns> args…`, echoing it and its output.
fn show_ip(host: &Host, label: &str, args: &[&str]) {
    println!("$ ip -n {label} {}", args.join(" "));
    match host.ns.ip(args) {
        Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => println!("(ip: {e})"),
    }
}

/// Prints the director's ARP sysctls, as `sysctl` would.
fn show_arp_sysctls(host: &Host) {
    for key in [
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
    ] {
        match host.ns.sysctl(key) {
            Ok(value) => println!("{key} = {value}"),
            Err(e) => println!("({key}: {e})"),
        }
    }
}

/// vipd's config in the demo: the seed's VIP on the director namespace's
/// eth0, and the seed's dual role (real server while STANDBY): on tunl0 as
/// in the seed when the kernel has ipip (the VM's does), else on lo (DR).
fn vipd_config(dir: &Path, mode: &str) -> String {
    format!(
        "state_file: {}\naddresses:\n  - address: 198.51.100.10/24\n    interface: eth0\n    label: eth0:vip\nannounce:\n  count: 3\n  interval: 100ms\nreal_server:\n  mode: {mode}\n",
        dir.join("vipd.state").display()
    )
}

fn show_table() {
    println!("$ ipvsadm -Ln");
    match Command::new("ipvsadm").arg("-Ln").output() {
        Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => println!("(ipvsadm: {e})"),
    }
}

/// The seed's real servers (`deploy/config/ipvsd.yaml`).
const REALS: &[&str] = &[
    "198.51.100.11:80",
    "198.51.100.12:80",
    "198.51.100.101:80",
    "198.51.100.102:80",
    "198.51.100.103:80",
];
/// The one the demo stops.
const FAILING: usize = 3;

/// In the VM: the seed's real servers as HTTP servers on the guest's `lo`
/// (the guest is this demo's alone). On a host with IPVS the demo adds no
/// addresses, so checkd finds the reals down.
fn real_servers() -> anyhow::Result<Vec<HttpServer>> {
    if std::env::var_os(DEMO_DIR).is_none() {
        println!("(not in the VM: no real servers here, so checkd will find the reals down)");
        return Ok(Vec::new());
    }
    step("the seed's real servers: an HTTP server on each address");
    REALS
        .iter()
        .map(|addr| {
            let addr: std::net::SocketAddr = addr.parse()?;
            system::run(Command::new("ip").args([
                "addr",
                "add",
                &format!("{}/32", addr.ip()),
                "dev",
                "lo",
            ]))?;
            println!("serving HTTP at {addr}");
            Ok(HttpServer::start_here(addr)?)
        })
        .collect()
}

/// Polls `tandemctl check list` until `done` holds of its output (10 s).
fn wait_checks(bins: &Path, dir: &Path, done: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    for _ in 0..100 {
        let out = Command::new(bin(bins, "tandemctl"))
            .arg("--socket")
            .arg(socket(dir, "checkd"))
            .args(["check", "list"])
            .output()
            .context("running tandemctl")?;
        if out.status.success() && done(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("checkd did not get there within 10 s")
}

/// Builds, then walks the group here if this kernel has IPVS, else in the VM.
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    if let Some(dir) = std::env::var_os(DEMO_DIR) {
        return walk(Path::new(&dir));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("workspace root")?;
    // Only the daemons' packages: building the whole workspace could relink
    // this very xtask binary while it runs.
    let build = [
        "build",
        "-q",
        "-p",
        "tandem-vipd",
        "-p",
        "tandem-ipvsd",
        "-p",
        "tandem-checkd",
        "-p",
        "tandemctl",
    ];
    system::run(Command::new("cargo").current_dir(&root).args(build))?;
    let staging = stage(&root)?;
    if Path::new("/proc/net/ip_vs").exists() {
        return walk(&staging);
    }
    if !system::is_root() {
        bail!("this kernel has no IPVS, so the demo runs in the test VM, which needs root");
    }
    println!(
        "This kernel has no IPVS: booting the test VM (a Debian kernel under qemu) to run the demo there..."
    );
    let vm = tandem_integration_tests::vm::prepare().context("preparing the VM")?;
    let guest_dir = vm
        .cache_dir
        .join("exec")
        .join(format!("demo-{}", std::process::id()));
    copy_dir(&staging, &guest_dir)?;
    let exe = guest_dir.join("xtask");
    std::fs::copy(std::env::current_exe()?, &exe).context("staging xtask")?;
    let script = format!(
        "{DEMO_DIR}='{}' '{}' demo",
        guest_dir.display(),
        exe.display()
    );
    let out = vm.run(&script, Duration::from_secs(300));
    let _ = std::fs::remove_dir_all(&guest_dir);
    let _ = std::fs::remove_dir_all(&staging);
    let out = out.context("running the demo in the VM")?;
    print!("{}", out.output);
    Ok(if out.status == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// The state file the example config names.
const STATE_FILE: &str = "/var/lib/tandem/ipvsd/table.pb";

/// Copies the binaries and ipvsd's config into a fresh directory.
fn stage(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tandem-demo-stage-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for name in BINARIES {
        std::fs::copy(root.join("target/debug").join(name), dir.join(name))
            .with_context(|| format!("staging {name}"))?;
    }
    std::fs::copy(
        root.join("deploy/config/ipvsd.yaml"),
        dir.join("ipvsd.yaml"),
    )
    .context("staging ipvsd.yaml")?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// The walk itself, with the binaries and config in `bins`.
fn walk(bins: &Path) -> anyhow::Result<std::process::ExitCode> {
    let dir = std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut running = Running {
        children: Vec::new(),
        dir: dir.clone(),
    };

    // The example keeps its state file under /var/lib; the demo keeps it here.
    let config = std::fs::read_to_string(bins.join("ipvsd.yaml")).context("reading ipvsd.yaml")?;
    let state = dir.join("ipvsd.table");
    std::fs::write(
        dir.join("ipvsd.yaml"),
        config.replace(STATE_FILE, &state.to_string_lossy()),
    )?;

    let mut servers = real_servers()?;

    step(
        "the seed's LAN: a director namespace (eth0 198.51.100.11) and a client (198.51.100.50) on a bridge",
    );
    let lan = Lan::new("demo")?;
    let director = lan.host("dir", "198.51.100.11/24")?;
    let client = lan.host("client", "198.51.100.50/24")?;
    // Only so the client keeps an entry learned from a gratuitous ARP it
    // never asked for, to show it below.
    client.ns.set_sysctl("net.ipv4.conf.eth0.arp_accept", "1")?;
    let mode = if director.ns.ip(&["link", "show", "tunl0"]).is_ok() {
        "tun"
    } else {
        "dr"
    };
    std::fs::write(dir.join("vipd.yaml"), vipd_config(&dir, mode))?;
    println!(
        "director: {}, client: {}",
        director.ns.name(),
        client.ns.name()
    );

    step("start the resource daemons (the seed's haresources: IPaddr ipvsadm ldirectord)");
    for daemon in GROUP {
        let sock = socket(&dir, daemon);
        let mut cmd = if *daemon == "vipd" {
            director.ns.command(&bin(bins, daemon).to_string_lossy())
        } else {
            Command::new(bin(bins, daemon))
        };
        cmd.arg("--listen").arg(&sock);
        if *daemon == "vipd" {
            cmd.arg("--config").arg(dir.join("vipd.yaml"));
            println!(
                "$ ip netns exec dir vipd --listen {} --config vipd.yaml   # VIP 198.51.100.10/24 on eth0, real server ({mode}) while STANDBY",
                sock.display()
            );
        } else if *daemon == "ipvsd" {
            cmd.arg("--config").arg(dir.join("ipvsd.yaml"));
            println!(
                "$ ipvsd --listen {} --config ipvsd.yaml   # the seed's cluster",
                sock.display()
            );
        } else if *daemon == "checkd" {
            let ipvsd = socket(&dir, "ipvsd");
            cmd.arg("--ipvsd-socket").arg(&ipvsd);
            println!(
                "$ checkd --listen {} --ipvsd-socket {}",
                sock.display(),
                ipvsd.display()
            );
        } else {
            println!("$ {daemon} --listen {}", sock.display());
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {daemon}"))?;
        running.children.push(((*daemon).to_owned(), child));
        wait_for(&sock)?;
        ctl(bins, &dir, daemon, &["health"])?;
    }

    step("this node takes the group at epoch 1: STANDBY, then ACTIVE, in order");
    for target in ["standby", "active"] {
        for daemon in GROUP {
            if !ctl(bins, &dir, daemon, &["transition", target, "--epoch", "1"])? {
                bail!("{daemon} refused {target}");
            }
        }
    }

    show_table();

    step(
        "vipd: the VIP is on the director's eth0; the client learned it from the gratuitous ARP without asking",
    );
    ctl(bins, &dir, "vipd", &["vip", "list"])?;
    show_ip(&director, "dir", &["-br", "addr", "show", "dev", "eth0"]);
    show_ip(&client, "client", &["neigh", "show", "198.51.100.10"]);
    show_ip(&director, "dir", &["-br", "link", "show", "dev", "eth0"]);

    step("checkd probes every real (a TCP connect each second, up after 2 successes)");
    wait_checks(bins, &dir, |list| !list.contains("unknown"))?;
    ctl(bins, &dir, "checkd", &["check", "list"])?;

    step("the table through ipvsd's API: health, drains, effective weights, connections");
    ctl(bins, &dir, "ipvsd", &["ipvs", "list"])?;

    if let Some(server) = servers.get_mut(FAILING) {
        step("198.51.100.102 stops serving: down after 2 failed probes, weight 0 (quiescent)");
        server.stop();
        wait_checks(bins, &dir, |list| {
            list.lines()
                .any(|l| l.contains("198.51.100.102:80") && l.contains(" down "))
        })?;
        ctl(bins, &dir, "checkd", &["check", "list"])?;
        show_table();
        *server = HttpServer::start_here(REALS[FAILING].parse()?)?;
        wait_checks(bins, &dir, |list| !list.contains(" down "))?;
        println!("(serving again: back up after 2 successful probes)");
        show_table();
    }

    step(
        "maintenance on 198.51.100.12: drain it (weight 0, wait for its connections), then bring it back",
    );
    if !ctl(
        bins,
        &dir,
        "ipvsd",
        &[
            "ipvs",
            "drain",
            "198.51.100.12",
            "--wait",
            "--timeout",
            "30s",
        ],
    )? {
        bail!("the drain failed");
    }
    show_table();
    ctl(bins, &dir, "ipvsd", &["ipvs", "undrain", "198.51.100.12"])?;

    step("asking again is a no-op (idempotent)");
    ctl(
        bins,
        &dir,
        "vipd",
        &["transition", "active", "--epoch", "1"],
    )?;

    step("a peer takes over at epoch 2: this node steps down in reverse order");
    for daemon in GROUP.iter().rev() {
        ctl(
            bins,
            &dir,
            daemon,
            &["transition", "standby", "--epoch", "2"],
        )?;
    }

    step(
        "STANDBY in the seed's dual role: the VIP left eth0 for tunl0 (lo without ipip), hidden from ARP",
    );
    show_ip(&director, "dir", &["-br", "addr"]);
    show_arp_sysctls(&director);

    step("a stale hbd still at epoch 1 tries to make vipd ACTIVE: refused");
    if ctl(
        bins,
        &dir,
        "vipd",
        &["transition", "active", "--epoch", "1"],
    )? {
        bail!("vipd accepted a stale epoch");
    }

    step("status of the group");
    for daemon in GROUP {
        ctl(bins, &dir, daemon, &["status"])?;
    }

    step("stop: reverse order, then SIGTERM");
    for daemon in GROUP.iter().rev() {
        ctl(
            bins,
            &dir,
            daemon,
            &["transition", "stopped", "--epoch", "2"],
        )?;
    }
    show_table();
    println!("(vipd put back everything it changed: no VIP, ARP sysctls as before)");
    show_ip(&director, "dir", &["-br", "addr"]);
    show_arp_sysctls(&director);
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

    drop(servers);
    println!(
        "\nvipd placed and announced the VIP, ipvsd programmed the kernel table above and checkd \
         probed its reals. Not built yet: heartbeats and failover between two directors (hbd, \
         issue 8); this demo plays hbd's part by hand."
    );
    Ok(std::process::ExitCode::SUCCESS)
}
