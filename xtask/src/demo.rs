//! `cargo xtask demo`: the seed's cluster — two directors whose hbd
//! decide which one serves, each driving its resource group through the
//! resource-ordering contract.
//!
//! The seed's `haresources` line — `IPaddr::VIP ipvsadm ldirectord` — is
//! tandem's group vipd → ipvsd → checkd. The demo puts two director
//! namespaces ("loadbalancer" and "backup", as in the seed's `ha.cf`) and a
//! client on a bridge. Each director runs hbd and vipd; hbd hears its peer
//! over UDP and over a serial line (two ptys); the loadbalancer's group also
//! has ipvsd (the seed's cluster, `deploy/config/ipvsd.yaml`) and checkd,
//! which probes the seed's real servers (HTTP servers the demo runs). The
//! demo shows the group coming up in order, the VIP announced to the client,
//! `ipvsadm -Ln`, a real going down and back, a drain, `hb standby` and
//! `hb takeover` moving the VIP between directors, a director losing power
//! and the backup taking over within deadtime, and a stale epoch refused.
//! It needs kernel IPVS: on a host without it
//! (like the build machines) it boots the test VM and runs there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tandem_integration_tests::netns::{Host, Lan};
use tandem_integration_tests::serial_line::SerialLine;
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
const BINARIES: &[&str] = &["hbd", "vipd", "ipvsd", "checkd", "tandemctl"];

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

/// Runs `tandemctl --socket <dir>/<daemon>.sock args…` every 100 ms until
/// `done` holds of its output; fails after `limit_s` seconds naming `what`.
fn poll_ctl(
    bins: &Path,
    dir: &Path,
    daemon: &str,
    args: &[&str],
    what: &str,
    limit_s: u64,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    for _ in 0..limit_s * 10 {
        let out = Command::new(bin(bins, "tandemctl"))
            .arg("--socket")
            .arg(socket(dir, daemon))
            .args(args)
            .output()
            .context("running tandemctl")?;
        if out.status.success() && done(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{daemon}: {what} not within {limit_s} s")
}

/// Polls `tandemctl check list` until `done` holds of its output (10 s).
fn wait_checks(bins: &Path, dir: &Path, done: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    poll_ctl(
        bins,
        dir,
        "checkd",
        &["check", "list"],
        "the checks",
        10,
        done,
    )
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
        "tandem-hbd",
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

/// hbd's config for director `node`: the seed's cluster with fast timers,
/// unicast UDP to the other director plus the serial line, auto_failback
/// to the loadbalancer, and `resources` as its group.
/// The directors' ping target (ipfail's ping node): the client stands in
/// for the upstream router.
const UPSTREAM: &str = "198.51.100.50";

fn hbd_config(dir: &Path, node: &str, peer: &str, tty: &Path, resources: &[&str]) -> String {
    let mut config = format!(
        "cluster: lvs\nnode: {node}\nnodes:\n  - name: loadbalancer\n    priority: 100\n  - name: backup\n    priority: 90\n\
         key_file: {keys}\n\
         timers:\n  keepalive: 100ms\n  warntime: 300ms\n  deadtime: 500ms\n  initdead: 3s\n\
         links:\n  udp_port: 694\n  ucast:\n    - interface: eth0\n      peer: {peer}\n  serial:\n    - device: {tty}\n      baud: 115200\n\
         auto_failback: true\npreferred: loadbalancer\n\
         ping:\n  targets: [{UPSTREAM}]\n  interval: 200ms\n  timeout: 150ms\n  deadping: 600ms\n\
         resources:\n",
        keys = dir.join("hbd.keys").display(),
        tty = tty.display(),
    );
    for name in resources {
        config.push_str(&format!(
            "  - name: {name}\n    socket: {}\n    timeout: 5s\n",
            socket(dir, name).display()
        ));
    }
    config
}

/// Writes the shared key file (mode 0600, a fresh random secret) into
/// both directors' directories.
fn write_keys(dirs: &[&Path]) -> anyhow::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut secret = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    for dir in dirs {
        let path = dir.join("hbd.keys");
        std::fs::write(&path, format!("auth 1\n1 sha256 {hex}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Starts `daemon` from `bins` in `host`'s namespace (or here), serving
/// on its socket in `dir`, logging to `dir/<daemon>.log`.
fn spawn(
    running: &mut Running,
    bins: &Path,
    host: Option<&Host>,
    dir: &Path,
    daemon: &str,
    args: &[&str],
) -> anyhow::Result<()> {
    let sock = socket(dir, daemon);
    let program = bin(bins, daemon);
    let mut cmd = match host {
        Some(host) => host.ns.command(&program.to_string_lossy()),
        None => Command::new(program),
    };
    let log = std::fs::File::create(dir.join(format!("{daemon}.log")))?;
    let child = cmd
        .arg("--listen")
        .arg(&sock)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {daemon}"))?;
    running.children.push((
        format!("{daemon} ({})", host.map_or("host", |h| h.ns.name())),
        child,
    ));
    wait_for(&sock)
}

/// Polls `tandemctl hb status` at `dir` until `done` holds of it (15 s).
/// Waits until the hbd in `dir` shows `node` serving (see [`serving`]).
fn wait_serving(bins: &Path, dir: &Path, node: &str) -> anyhow::Result<()> {
    let what = format!("{node} serving");
    poll_ctl(bins, dir, "hbd", &["hb", "status"], &what, 15, |s| {
        serving(s, node)
    })
}

/// True when `status` (tandemctl hb status) shows `node` ACTIVE and every
/// resource of the group ACTIVE.
fn serving(status: &str, node: &str) -> bool {
    let node_active = status
        .lines()
        .any(|l| l.starts_with(node) && l.contains(" ACTIVE "));
    let resources: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("RESOURCE"))
        .skip(1)
        .collect();
    node_active && !resources.is_empty() && resources.iter().all(|l| l.contains(" ACTIVE"))
}

/// The last takeover timeline hbd logged in `dir`.
fn last_timeline(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("hbd.log")).unwrap_or_default();
    log.lines()
        .rev()
        .find(|l| l.contains("group ACTIVE"))
        .and_then(|l| l.split("timeline=").nth(1))
        .unwrap_or("(not logged)")
        .to_owned()
}

/// The walk itself, with the binaries and config in `bins`.
fn walk(bins: &Path) -> anyhow::Result<std::process::ExitCode> {
    let dir = std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()));
    let lb_dir = dir.clone();
    let backup_dir = dir.join("backup");
    std::fs::create_dir_all(&backup_dir)?;
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
        "the seed's LAN: directors loadbalancer (198.51.100.11) and backup (.12), a client (.50), on a bridge",
    );
    let lan = Lan::new("demo")?;
    let lb = lan.host("lb", "198.51.100.11/24")?;
    let backup = lan.host("backup", "198.51.100.12/24")?;
    let client = lan.host("client", "198.51.100.50/24")?;
    // Only so the client keeps an entry learned from a gratuitous ARP it
    // never asked for, to show it below.
    client.ns.set_sysctl("net.ipv4.conf.eth0.arp_accept", "1")?;
    let mode = if lb.ns.ip(&["link", "show", "tunl0"]).is_ok() {
        "tun"
    } else {
        "dr"
    };
    for d in [&lb_dir, &backup_dir] {
        std::fs::write(d.join("vipd.yaml"), vipd_config(d, mode))?;
    }
    println!(
        "loadbalancer: {}, backup: {}, client: {}",
        lb.ns.name(),
        backup.ns.name(),
        client.ns.name()
    );

    step("the resource daemons (the seed's haresources: IPaddr ipvsadm ldirectord)");
    let vipd_yaml = |d: &Path| d.join("vipd.yaml").to_string_lossy().into_owned();
    println!(
        "$ ip netns exec lb vipd --config vipd.yaml   # VIP 198.51.100.10/24 on eth0:vip when ACTIVE, real server ({mode}) when STANDBY"
    );
    spawn(
        &mut running,
        bins,
        Some(&lb),
        &lb_dir,
        "vipd",
        &["--config", &vipd_yaml(&lb_dir)],
    )?;
    println!("$ ipvsd --config ipvsd.yaml   # the seed's cluster");
    let ipvsd_yaml = dir.join("ipvsd.yaml").to_string_lossy().into_owned();
    spawn(
        &mut running,
        bins,
        None,
        &lb_dir,
        "ipvsd",
        &["--config", &ipvsd_yaml],
    )?;
    println!("$ checkd --ipvsd-socket ipvsd.sock");
    let ipvsd_sock = socket(&lb_dir, "ipvsd").to_string_lossy().into_owned();
    spawn(
        &mut running,
        bins,
        None,
        &lb_dir,
        "checkd",
        &["--ipvsd-socket", &ipvsd_sock],
    )?;
    println!("$ ip netns exec backup vipd --config vipd.yaml   # the same VIP");
    spawn(
        &mut running,
        bins,
        Some(&backup),
        &backup_dir,
        "vipd",
        &["--config", &vipd_yaml(&backup_dir)],
    )?;
    println!("(this demo has one kernel IPVS table, so the backup's group is its vipd alone)");

    step("hbd on both directors: heartbeats over UDP and a serial line, HMAC-signed");
    let line = SerialLine::new().context("making the serial line (two ptys)")?;
    write_keys(&[&lb_dir, &backup_dir])?;
    std::fs::write(
        lb_dir.join("hbd.yaml"),
        hbd_config(&lb_dir, "loadbalancer", "198.51.100.12", &line.a, GROUP),
    )?;
    std::fs::write(
        backup_dir.join("hbd.yaml"),
        hbd_config(&backup_dir, "backup", "198.51.100.11", &line.b, &["vipd"]),
    )?;
    print!("{}", std::fs::read_to_string(lb_dir.join("hbd.yaml"))?);
    for (host, d) in [(&lb, &lb_dir), (&backup, &backup_dir)] {
        let yaml = d.join("hbd.yaml").to_string_lossy().into_owned();
        println!("$ ip netns exec {} hbd --config {yaml}", host.ns.name());
        spawn(
            &mut running,
            bins,
            Some(host),
            d,
            "hbd",
            &["--config", &yaml],
        )?;
    }
    wait_serving(bins, &lb_dir, "loadbalancer")?;
    poll_ctl(
        bins,
        &backup_dir,
        "hbd",
        &["hb", "status"],
        "the backup hearing it",
        15,
        |s| {
            s.lines()
                .any(|l| l.starts_with("loadbalancer") && l.contains(" ACTIVE "))
        },
    )?;
    println!("(the loadbalancer's group went STANDBY, then ACTIVE in order: vipd, ipvsd, checkd)");
    ctl(bins, &lb_dir, "hbd", &["hb", "status"])?;
    ctl(bins, &backup_dir, "hbd", &["hb", "status"])?;

    show_table();

    step(
        "vipd: the VIP is on the loadbalancer's eth0; the client learned it from the gratuitous ARP without asking",
    );
    ctl(bins, &lb_dir, "vipd", &["vip", "list"])?;
    show_ip(&lb, "lb", &["-br", "addr", "show", "dev", "eth0"]);
    show_ip(&client, "client", &["neigh", "show", "198.51.100.10"]);
    show_ip(&lb, "lb", &["-br", "link", "show", "dev", "eth0"]);

    step("checkd probes every real (a TCP connect each second, up after 2 successes)");
    wait_checks(bins, &lb_dir, |list| !list.contains("unknown"))?;
    ctl(bins, &lb_dir, "checkd", &["check", "list"])?;

    step("the table through ipvsd's API: health, drains, effective weights, connections");
    ctl(bins, &lb_dir, "ipvsd", &["ipvs", "list"])?;

    if let Some(server) = servers.get_mut(FAILING) {
        step("198.51.100.102 stops serving: down after 2 failed probes, weight 0 (quiescent)");
        server.stop();
        wait_checks(bins, &lb_dir, |list| {
            list.lines()
                .any(|l| l.contains("198.51.100.102:80") && l.contains(" down "))
        })?;
        ctl(bins, &lb_dir, "checkd", &["check", "list"])?;
        show_table();
        *server = HttpServer::start_here(REALS[FAILING].parse()?)?;
        wait_checks(bins, &lb_dir, |list| !list.contains(" down "))?;
        println!("(serving again: back up after 2 successful probes)");
        show_table();
    }

    step(
        "maintenance on 198.51.100.12: drain it (weight 0, wait for its connections), then bring it back",
    );
    if !ctl(
        bins,
        &lb_dir,
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
    ctl(
        bins,
        &lb_dir,
        "ipvsd",
        &["ipvs", "undrain", "198.51.100.12"],
    )?;

    step("hb standby on the loadbalancer (hb_standby): the backup takes the group");
    ctl(bins, &lb_dir, "hbd", &["hb", "standby"])?;
    wait_serving(bins, &backup_dir, "backup")?;
    ctl(bins, &backup_dir, "hbd", &["hb", "status"])?;
    println!(
        "(the client's entry for the VIP now holds the backup's MAC: it moved without the client asking)"
    );
    show_ip(&client, "client", &["neigh", "show", "198.51.100.10"]);
    show_ip(&backup, "backup", &["-br", "link", "show", "dev", "eth0"]);

    step(
        "STANDBY in the seed's dual role: on the loadbalancer the VIP left eth0 for tunl0 (lo without ipip), hidden from ARP",
    );
    show_ip(&lb, "lb", &["-br", "addr"]);
    show_arp_sysctls(&lb);

    step("hb takeover on the loadbalancer (hb_takeover): the group comes back");
    ctl(bins, &lb_dir, "hbd", &["hb", "takeover"])?;
    wait_serving(bins, &lb_dir, "loadbalancer")?;
    ctl(bins, &lb_dir, "hbd", &["hb", "status"])?;

    step(
        "the loadbalancer loses its upstream (ipfail): its pings to the router fail, score 0 < 1, the backup takes over",
    );
    let blackhole = format!("{UPSTREAM}/32");
    lb.ns.ip(&["route", "add", "blackhole", &blackhole])?;
    wait_serving(bins, &backup_dir, "backup")?;
    ctl(bins, &lb_dir, "hbd", &["hb", "status"])?;
    step("the upstream is back: equal scores, auto_failback returns the group to the loadbalancer");
    lb.ns.ip(&["route", "del", "blackhole", &blackhole])?;
    wait_serving(bins, &lb_dir, "loadbalancer")?;
    ctl(bins, &lb_dir, "hbd", &["hb", "status"])?;

    step(
        "the loadbalancer loses power (its hbd and vipd killed, eth0 down): the backup takes over",
    );
    for (name, child) in &mut running.children {
        if (name.starts_with("hbd (") || name.starts_with("vipd (")) && name.contains(lb.ns.name())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    lb.ns.ip(&["link", "set", "eth0", "down"])?;
    wait_serving(bins, &backup_dir, "backup")?;
    println!(
        "timeline (backup's hbd log): {}",
        last_timeline(&backup_dir)
    );
    ctl(bins, &backup_dir, "hbd", &["hb", "status"])?;
    show_ip(&client, "client", &["neigh", "show", "198.51.100.10"]);

    step("a stale hbd still at epoch 1 tries to make the backup's vipd STANDBY: refused");
    if ctl(
        bins,
        &backup_dir,
        "vipd",
        &["transition", "standby", "--epoch", "1"],
    )? {
        bail!("vipd accepted a stale epoch");
    }

    step("stop: SIGTERM to the backup's hbd hands its group back to STANDBY");
    let mut stopped = Vec::new();
    for (name, child) in &mut running.children {
        if name.starts_with("hbd (") && name.contains(backup.ns.name()) {
            system::run(
                Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string()),
            )?;
            println!("{name} exited: {}", child.wait()?);
            stopped.push(name.clone());
        }
    }
    running.children.retain(|(name, _)| !stopped.contains(name));
    ctl(bins, &backup_dir, "vipd", &["status"])?;
    println!("(an operator stopping resources by hand uses a fresh, higher epoch)");
    ctl(
        bins,
        &backup_dir,
        "vipd",
        &["transition", "stopped", "--epoch", "100"],
    )?;
    for daemon in GROUP.iter().rev().filter(|d| **d != "vipd") {
        ctl(
            bins,
            &lb_dir,
            daemon,
            &["transition", "stopped", "--epoch", "100"],
        )?;
    }
    show_table();
    println!("(the backup's vipd put back everything it changed: no VIP, ARP sysctls as before)");
    show_ip(&backup, "backup", &["-br", "addr"]);
    show_arp_sysctls(&backup);
    for (name, child) in &mut running.children {
        if matches!(child.try_wait(), Ok(Some(_))) {
            continue;
        }
        system::run(
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
        )?;
        println!("{name} exited: {}", child.wait()?);
    }
    running.children.clear();

    drop(servers);
    drop(line);
    println!(
        "\nhbd decided which director serves and drove each group in order; vipd placed and \
         announced the VIP, ipvsd programmed the kernel table above and checkd probed its reals."
    );
    Ok(std::process::ExitCode::SUCCESS)
}
