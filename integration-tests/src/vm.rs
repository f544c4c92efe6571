//! Kernel VM runner (test tier 3): boots a Debian kernel, which has IPVS, in a
//! qemu VM and runs one shell command there.
//!
//! The host kernel has no IPVS, so kernel-facing tests run in a guest. The guest
//! mounts the host's root filesystem read-only over 9p and runs the command in a
//! chroot of it, so host-built binaries and host tools (`ipvsadm`, `ip`) run as
//! they are. Inside the chroot `/tmp`, `/run`, `/var/tmp` and `/dev/shm` are fresh
//! tmpfs, and `proc`, `sys`, `dev` and `dev/pts` are the guest's own; everything
//! else is read-only.
//!
//! The guest's init loads `ip_vs` with every scheduler the kernel ships, plus
//! `veth`, `bridge`, `macvlan`, `tun`, `ipip`, `sch_netem` and `nf_conntrack`,
//! brings `lo` up (IPVS refuses real servers until then), and powers off once the
//! command exits. A few more modules (`dummy`, `ip_gre`, `vrf`, `sch_tbf`,
//! `sch_htb`) are in the initramfs for the kernel to load on demand through
//! busybox `modprobe`.
//!
//! The kernel and initramfs are built once and cached in `/var/cache/tandem-vm`
//! (or `$TANDEM_VM_CACHE`), keyed by kernel version; the kernel package is the one
//! the `linux-image-amd64` metapackage depends on. Host tools needed: qemu
//! (`qemu-system-x86`), a static `/bin/busybox` (`busybox-static`), `apt-get` and
//! `apt-cache` (`apt`), `dpkg-deb` (`dpkg`) and `depmod`/`modprobe` (`kmod`).
//! Nothing is installed for you: a missing tool is an error naming its package.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "TANDEM_VM_CACHE";
/// Cache directory used when [`CACHE_ENV`] is unset. It must not be under `/tmp`,
/// `/run` or `/var/tmp`: those are fresh tmpfs in the guest, which must read the
/// per-run command files from it.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/tandem-vm";

const META_PACKAGE: &str = "linux-image-amd64";
const BUSYBOX: &str = "/bin/busybox";
/// Bump when the initramfs recipe changes in a way the hashed inputs miss.
const RECIPE: &str = "tandem-vm initramfs v1";
/// Modules the guest's init loads (with their dependencies), after which every
/// `ip_vs_*` scheduler the kernel ships is loaded too.
const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "nf_conntrack",
    "ip_vs",
    "veth",
    "bridge",
    "macvlan",
    "tun",
    "ipip",
    "sch_netem",
];
/// Modules put in the initramfs, if the kernel has them, for on-demand loading.
const ON_DEMAND_MODULES: &[&str] = &["dummy", "ip_gre", "vrf", "sch_tbf", "sch_htb"];
/// `ip_vs_*` modules that are not schedulers and are left out.
const NOT_SCHEDULERS: &[&str] = &["ip_vs_ftp", "ip_vs_pe_sip"];
const BEGIN_MARKER: &str = "TANDEM-VM-BEGIN";
const END_MARKER: &str = "TANDEM-VM-END";
/// How much of the console output errors quote.
const TAIL_BYTES: usize = 4000;

/// The guest's `/init`. The kernel passes `tandem_job=<path>` from its command
/// line in the environment; `<path>.sh` holds the command and `<path>.cwd` the
/// directory to run it in, both on the host root.
const INIT_SCRIPT: &str = r#"#!/bin/sh
# tandem VM init: load modules, chroot into the host root (9p), run one command.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
fail() { echo "tandem-vm: $*"; poweroff -f; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
    insmod "/lib/modules/$(uname -r)/$m" || echo "tandem-vm: insmod $m failed"
done < /etc/tandem-vm-modules
ip link set lo up || fail "cannot bring lo up"
hostname tandem-vm
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144 host /mnt \
    || fail "cannot mount the host root over 9p"
mount -t proc proc /mnt/proc
mount -t sysfs sysfs /mnt/sys
mount -t devtmpfs devtmpfs /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts devpts /mnt/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /mnt/dev/shm
ln -sf /proc/self/fd /mnt/dev/fd
ln -sf fd/0 /mnt/dev/stdin
ln -sf fd/1 /mnt/dev/stdout
ln -sf fd/2 /mnt/dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /mnt/tmp || fail "cannot mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /mnt/run || fail "cannot mount /run"
mkdir -p /mnt/run/netns /mnt/run/lock
if [ -d /mnt/var/tmp ] && [ ! -L /mnt/var/tmp ]; then
    mount -t tmpfs -o mode=1777 tmpfs /mnt/var/tmp
fi
[ -n "$tandem_job" ] || fail "no tandem_job= on the kernel command line"
id=${tandem_job##*/}
# Raw console output (no CR before LF), and no kernel chatter in the command's output.
stty -onlcr 2>/dev/null
echo 1 > /proc/sys/kernel/printk
printf '\n%s %s\n' TANDEM-VM-BEGIN "$id"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    TERM=dumb USER=root LOGNAME=root \
    chroot /mnt /bin/sh -c 'cd "$(cat "$1.cwd")" 2>/dev/null || cd /
script=$(cat "$1.sh") || exit 125
exec /bin/sh -c "$script"' tandem-vm "$tandem_job" </dev/null 2>&1
status=$?
printf '\n%s %s %s\n' TANDEM-VM-END "$id" "$status"
# stty sets the mode with TCSADRAIN: it returns once the console has sent everything.
stty -onlcr 2>/dev/null
poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
"#;

/// What failed while preparing or running the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A host tool is missing.
    #[error("`{tool}` not found on the host: install the Debian package `{package}`")]
    MissingTool {
        /// The tool's name.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// `/bin/busybox` exists but is dynamically linked, so it cannot run alone in
    /// the initramfs.
    #[error("{BUSYBOX} is not statically linked: install the Debian package `busybox-static`")]
    BusyboxNotStatic,
    /// The cache directory cannot be used.
    #[error("VM cache directory {path}: {reason}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation and its path.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A host command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The kernel package or one of its parts could not be found.
    #[error("kernel: {0}")]
    Kernel(String),
    /// The guest command did not finish in time; qemu was killed.
    #[error("the VM did not finish within {timeout:?}, qemu was killed; console tail:\n{tail}")]
    Timeout {
        /// The time allowed.
        timeout: Duration,
        /// The end of the console output.
        tail: String,
    },
    /// qemu exited before the guest command finished (qemu error, kernel panic,
    /// init failure).
    #[error(
        "qemu exited ({status}) before the command finished (kernel panic or init failure?); \
         qemu stderr: {stderr}\nconsole tail:\n{tail}"
    )]
    Exited {
        /// qemu's exit status.
        status: String,
        /// What qemu wrote to stderr.
        stderr: String,
        /// The end of the console output.
        tail: String,
    },
}

/// The result of a command run in the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmOutput {
    /// The command's exit status (0–255; 128+N if killed by signal N).
    pub status: i32,
    /// What the command wrote to stdout and stderr, interleaved as written, with
    /// no boot output.
    pub output: String,
}

/// A cached kernel and initramfs, ready to boot.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// The kernel release, e.g. `6.1.0-56-amd64`.
    pub kernel_version: String,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs (uncompressed newc cpio).
    pub initramfs: PathBuf,
}

/// Boots the VM, runs `script` with `/bin/sh -c` in a chroot of the host root
/// (stdin `/dev/null`, cwd the host's current directory if the guest can see it,
/// else `/`), and powers off. Kills qemu and fails if that takes over `timeout`.
pub fn run(script: &str, timeout: Duration) -> Result<VmOutput, VmError> {
    prepare()?.run(script, timeout)
}

/// Makes sure the kernel and initramfs are in the cache, building them if not
/// (downloads the kernel package: about 70 MB).
pub fn prepare() -> Result<Prepared, VmError> {
    let cache_dir = cache_dir()?;
    let package = kernel_package(&cache_dir)?;
    let version = package
        .strip_prefix("linux-image-")
        .ok_or_else(|| VmError::Kernel(format!("unexpected package name {package}")))?
        .to_owned();
    let dir = cache_dir.join(&version);
    let kernel = dir.join("vmlinuz");
    let initramfs = dir.join(format!("initramfs-{:016x}.cpio", recipe_key()));
    if !(kernel.is_file() && initramfs.is_file()) {
        create_dir(&dir)?;
        build(&dir, &package, &version, &kernel, &initramfs)?;
    }
    Ok(Prepared {
        cache_dir,
        kernel_version: version,
        kernel,
        initramfs,
    })
}

impl Prepared {
    /// Like [`run`], with this kernel and initramfs.
    pub fn run(&self, script: &str, timeout: Duration) -> Result<VmOutput, VmError> {
        let qemu = require("qemu-system-x86_64", "qemu-system-x86")?;
        let runs = self.cache_dir.join("runs");
        create_dir(&runs)?;
        let id = unique_id();
        let job = JobFiles(runs.join(&id));
        write_file(&job.with_ext("sh"), script.as_bytes())?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        write_file(&job.with_ext("cwd"), cwd.as_os_str().as_bytes())?;
        let job_path = job.0.to_str().ok_or_else(|| VmError::CacheDir {
            path: self.cache_dir.clone(),
            reason: "not valid UTF-8".into(),
        })?;

        let mut command = Command::new(qemu);
        command
            .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2"])
            .args(["-nodefaults", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-monitor", "none"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initramfs)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet tandem_job={job_path}"
            ))
            .args([
                "-virtfs",
                "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut qemu = Qemu(command.spawn().map_err(|e| io_error("starting qemu", e))?);
        let stderr = qemu.0.stderr.take().map(|mut pipe| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        });
        let (tx, rx) = mpsc::channel();
        if let Some(mut pipe) = qemu.0.stdout.take() {
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }

        let deadline = SystemTime::now() + timeout;
        let mut console = Console::new(&id);
        loop {
            if let Some(result) = console.result() {
                // The guest powers off by itself; give it a moment before killing.
                qemu.wait_for_exit(Duration::from_secs(10));
                return Ok(result);
            }
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if left.is_zero() {
                qemu.kill();
                return Err(VmError::Timeout {
                    timeout,
                    tail: console.tail(),
                });
            }
            match rx.recv_timeout(left) {
                Ok(chunk) => console.push(&chunk),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(result) = console.result() {
                        return Ok(result);
                    }
                    let status = match qemu.0.wait() {
                        Ok(status) => status.to_string(),
                        Err(e) => e.to_string(),
                    };
                    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
                    return Err(VmError::Exited {
                        status,
                        stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
                        tail: console.tail(),
                    });
                }
            }
        }
    }
}

/// The console output seen so far, and where the command's output lies in it.
struct Console {
    bytes: Vec<u8>,
    begin: Vec<u8>,
    end: Vec<u8>,
    /// Where the command's output starts, once the begin marker was seen.
    start: Option<usize>,
    /// Where to resume looking for the next marker.
    scanned: usize,
}

impl Console {
    fn new(id: &str) -> Self {
        Self {
            bytes: Vec::new(),
            begin: format!("{BEGIN_MARKER} {id}").into_bytes(),
            end: format!("\n{END_MARKER} {id} ").into_bytes(),
            start: None,
            scanned: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.start.is_some() {
            return;
        }
        match find(&self.bytes, &self.begin, self.scanned) {
            Some(at) => {
                self.scanned = at;
                if let Some(nl) = find(&self.bytes, b"\n", at) {
                    self.start = Some(nl + 1);
                }
            }
            None => self.scanned = self.bytes.len().saturating_sub(self.begin.len()),
        }
    }

    /// The command's status and output, once the end marker's line is complete.
    fn result(&mut self) -> Option<VmOutput> {
        let start = self.start?;
        let at = find(&self.bytes, &self.end, self.scanned.max(start));
        let Some(at) = at else {
            self.scanned = self.bytes.len().saturating_sub(self.end.len());
            return None;
        };
        let rest = &self.bytes[at + self.end.len()..];
        let line_end = rest.iter().position(|&b| b == b'\n')?;
        let status = std::str::from_utf8(&rest[..line_end])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The marker's leading newline is ours (a CR too if the console adds them).
        let mut output = &self.bytes[start..at];
        if let [head @ .., b'\r'] = output {
            output = head;
        }
        Some(VmOutput {
            status,
            output: String::from_utf8_lossy(output).into_owned(),
        })
    }

    fn tail(&self) -> String {
        let from = self.bytes.len().saturating_sub(TAIL_BYTES);
        String::from_utf8_lossy(&self.bytes[from..]).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The qemu process, killed on drop if still running.
struct Qemu(Child);

impl Qemu {
    fn wait_for_exit(&mut self, grace: Duration) {
        let deadline = SystemTime::now() + grace;
        while SystemTime::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// A run's command files (`<path>.sh`, `<path>.cwd`), removed on drop.
struct JobFiles(PathBuf);

impl JobFiles {
    fn with_ext(&self, ext: &str) -> PathBuf {
        self.0.with_extension(ext)
    }
}

impl Drop for JobFiles {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.with_ext("sh"));
        let _ = fs::remove_file(self.with_ext("cwd"));
    }
}

/// The cache directory, created if needed and checked to be visible in the guest.
fn cache_dir() -> Result<PathBuf, VmError> {
    let dir = std::env::var_os(CACHE_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
    let dir = std::path::absolute(&dir)
        .map_err(|e| io_error(format!("resolving {}", dir.display()), e))?;
    check_cache_dir(&dir)?;
    create_dir(&dir)?;
    let dir = dir
        .canonicalize()
        .map_err(|e| io_error(format!("resolving {}", dir.display()), e))?;
    check_cache_dir(&dir)?;
    Ok(dir)
}

fn check_cache_dir(dir: &Path) -> Result<(), VmError> {
    let bad = |reason: &str| {
        Err(VmError::CacheDir {
            path: dir.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if ["/tmp", "/run", "/var/tmp"]
        .iter()
        .any(|t| dir.starts_with(t))
    {
        return bad("is under /tmp, /run or /var/tmp, which are empty tmpfs in the guest");
    }
    match dir.to_str() {
        None => bad("is not valid UTF-8"),
        Some(s) if s.chars().any(|c| c.is_whitespace() || c == '"') => {
            bad("contains whitespace or quotes (it goes on the kernel command line)")
        }
        Some(_) => Ok(()),
    }
}

/// The kernel package the metapackage depends on, e.g. `linux-image-6.1.0-56-amd64`.
/// The answer is remembered until apt's package lists change.
fn kernel_package(cache_dir: &Path) -> Result<String, VmError> {
    let remembered = cache_dir.join("kernel-package");
    let lists_changed = fs::metadata("/var/lib/apt/lists").and_then(|m| m.modified());
    let remembered_at = fs::metadata(&remembered).and_then(|m| m.modified());
    if let (Ok(changed), Ok(at)) = (lists_changed, remembered_at)
        && at > changed
        && let Ok(package) = fs::read_to_string(&remembered)
        && !package.trim().is_empty()
    {
        return Ok(package.trim().to_owned());
    }
    let apt_cache = require("apt-cache", "apt")?;
    let out = output(Command::new(apt_cache).args(["depends", META_PACKAGE]))?;
    let package = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|line| line.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.contains("cloud"))
        .map(str::to_owned)
        .ok_or_else(|| {
            VmError::Kernel(format!(
                "`apt-cache depends {META_PACKAGE}` names no kernel package (run `apt-get update`?)"
            ))
        })?;
    write_atomically(&remembered, package.as_bytes())?;
    Ok(package)
}

/// Downloads and unpacks the kernel package and writes `kernel` and `initramfs`.
fn build(
    dir: &Path,
    package: &str,
    version: &str,
    kernel: &Path,
    initramfs: &Path,
) -> Result<(), VmError> {
    let dpkg_deb = require("dpkg-deb", "dpkg")?;
    let depmod = require("depmod", "kmod")?;
    let modprobe = require("modprobe", "kmod")?;
    let busybox = fs::read(BUSYBOX).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => VmError::MissingTool {
            tool: "busybox",
            package: "busybox-static",
        },
        _ => io_error(format!("reading {BUSYBOX}"), e),
    })?;
    if !is_static_elf(&busybox) {
        return Err(VmError::BusyboxNotStatic);
    }

    let scratch = Scratch(dir.join(format!("build-{}", unique_id())));
    create_dir(&scratch.0)?;
    let deb = download(dir, &scratch.0, package)?;
    let root = scratch.0.join("root");
    output(Command::new(dpkg_deb).arg("-x").arg(&deb).arg(&root))?;
    let image = root.join(format!("boot/vmlinuz-{version}"));
    let moddir = root.join("lib/modules").join(version);
    if !image.is_file() || !moddir.is_dir() {
        return Err(VmError::Kernel(format!(
            "{} lacks boot/vmlinuz-{version} or lib/modules/{version}",
            deb.display()
        )));
    }
    output(Command::new(depmod).arg("-b").arg(&root).arg(version))?;

    // Module files (relative to `moddir`, as the package names them) in load order.
    let show_depends = |name: &str| -> Result<Vec<String>, VmError> {
        let out = output(Command::new(&modprobe).arg("-d").arg(&root).args([
            "-S",
            version,
            "--show-depends",
            name,
        ]))?;
        let prefix = format!("{}/", moddir.display());
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("insmod ")?.split_whitespace().next())
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect())
    };
    let mut boot: Vec<String> = Vec::new();
    for name in BOOT_MODULES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(schedulers(&moddir)?)
    {
        for file in show_depends(&name)? {
            if !boot.contains(&file) {
                boot.push(file);
            }
        }
    }
    let mut files: BTreeSet<String> = boot.iter().cloned().collect();
    for name in ON_DEMAND_MODULES {
        // Optional: left out if this kernel does not have it.
        files.extend(show_depends(name).unwrap_or_default());
    }

    let mut cpio = Cpio::default();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "mnt", "etc",
    ] {
        cpio.dir(d);
    }
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.symlink("bin/sh", "busybox");
    cpio.symlink("sbin/modprobe", "/bin/busybox");
    cpio.char_dev("dev/console", 0o600, 5, 1);
    let boot_list: String = boot.iter().map(|f| format!("{}\n", plain_ko(f))).collect();
    cpio.file("etc/tandem-vm-modules", 0o644, boot_list.as_bytes());
    let base = format!("lib/modules/{version}");
    let mut dirs = BTreeSet::new();
    for file in &files {
        let mut parent = Path::new(file).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_owned());
            parent = p.parent();
        }
    }
    cpio.dir("lib");
    cpio.dir("lib/modules");
    cpio.dir(&base);
    for d in &dirs {
        cpio.dir(&format!("{base}/{}", d.display()));
    }
    for file in &files {
        let bytes = module_bytes(&moddir.join(file))?;
        cpio.file(&format!("{base}/{}", plain_ko(file)), 0o644, &bytes);
    }
    // For busybox modprobe: the dependency and alias lines of the modules we ship.
    let read = |name: &str| {
        fs::read_to_string(moddir.join(name))
            .map_err(|e| io_error(format!("reading {}/{name}", moddir.display()), e))
    };
    let dep: String = read("modules.dep")?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(module, _)| files.contains(*module))
        .map(|(module, deps)| {
            let deps: String = deps
                .split_whitespace()
                .map(|d| format!(" {}", plain_ko(d)))
                .collect();
            format!("{}:{deps}\n", plain_ko(module))
        })
        .collect();
    cpio.file(&format!("{base}/modules.dep"), 0o644, dep.as_bytes());
    let names: BTreeSet<String> = files.iter().map(|f| module_name(f)).collect();
    let alias: String = read("modules.alias")?
        .lines()
        .filter(|l| l.rsplit(' ').next().is_some_and(|m| names.contains(m)))
        .map(|l| format!("{l}\n"))
        .collect();
    cpio.file(&format!("{base}/modules.alias"), 0o644, alias.as_bytes());

    copy_atomically(&image, kernel)?;
    let tmp = temp_name(initramfs);
    let written = (|| {
        let file = fs::File::create(&tmp)?;
        let mut out = BufWriter::new(file);
        cpio.finish(&mut out)?;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        fs::rename(&tmp, initramfs)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(format!("writing {}", initramfs.display()), e));
    }
    Ok(())
}

/// The kernel package file in `dir`, downloaded (via `scratch`) if not there yet.
fn download(dir: &Path, scratch: &Path, package: &str) -> Result<PathBuf, VmError> {
    let is_ours = |p: &Path| {
        p.file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
    };
    let find_deb = |d: &Path| -> Result<Option<PathBuf>, VmError> {
        let entries =
            fs::read_dir(d).map_err(|e| io_error(format!("listing {}", d.display()), e))?;
        Ok(entries.flatten().map(|e| e.path()).find(|p| is_ours(p)))
    };
    if let Some(deb) = find_deb(dir)? {
        return Ok(deb);
    }
    let apt_get = require("apt-get", "apt")?;
    output(
        Command::new(apt_get)
            .args(["download", package])
            .current_dir(scratch),
    )?;
    let fetched = find_deb(scratch)?.ok_or_else(|| {
        VmError::Kernel(format!("`apt-get download {package}` left no .deb behind"))
    })?;
    let name = fetched.file_name().unwrap_or_default();
    let deb = dir.join(name);
    fs::rename(&fetched, &deb).map_err(|e| io_error(format!("moving {}", deb.display()), e))?;
    Ok(deb)
}

/// The `ip_vs_*` schedulers this kernel ships, e.g. `ip_vs_rr`.
fn schedulers(moddir: &Path) -> Result<Vec<String>, VmError> {
    let ipvs = moddir.join("kernel/net/netfilter/ipvs");
    let entries =
        fs::read_dir(&ipvs).map_err(|e| io_error(format!("listing {}", ipvs.display()), e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(module_name))
        .filter(|n| n.starts_with("ip_vs_") && !NOT_SCHEDULERS.contains(&n.as_str()))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(VmError::Kernel(format!(
            "no IPVS schedulers in {}",
            ipvs.display()
        )));
    }
    Ok(names)
}

/// `kernel/x/foo-bar.ko.xz` → `foo_bar`.
fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// A module path with any compression suffix dropped (`.ko.xz` → `.ko`).
fn plain_ko(file: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext).filter(|f| f.ends_with(".ko")))
        .unwrap_or(file)
}

/// A module's contents, decompressed on the host (busybox insmod may not can).
fn module_bytes(path: &Path) -> Result<Vec<u8>, VmError> {
    let tool = match path.extension().and_then(OsStr::to_str) {
        Some("xz") => Some(("xz", "xz-utils")),
        Some("zst") => Some(("zstd", "zstd")),
        Some("gz") => Some(("gzip", "gzip")),
        _ => None,
    };
    match tool {
        Some((tool, package)) => output(Command::new(require(tool, package)?).arg("-dc").arg(path)),
        None => fs::read(path).map_err(|e| io_error(format!("reading {}", path.display()), e)),
    }
}

/// A newc-format cpio archive, built in memory (so device nodes need no root).
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    fn dir(&mut self, path: &str) {
        self.entry(path, 0o040_755, 0, &[]);
    }

    fn file(&mut self, path: &str, perm: u32, contents: &[u8]) {
        self.entry(path, 0o100_000 | perm, 0, contents);
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120_777, 0, target.as_bytes());
    }

    fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, 0o020_000 | perm, (major << 8) | minor, &[]);
    }

    /// `rdev` packs major << 8 | minor.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, contents: &[u8]) {
        self.next_inode += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let size = u32::try_from(contents.len()).unwrap_or(u32::MAX);
        let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // dev major
            0, // dev minor
            rdev >> 8,
            rdev & 0xff,
            name_size,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        out.write_all(&self.data)
    }
}

/// A scratch directory removed (with its contents) on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether `elf` is an x86-64 ELF executable with no program interpreter.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count))
        .all(|i| u32_at(phoff + i * usize::from(entsize)).is_some_and(|p_type| p_type != PT_INTERP))
}

/// Hash of everything that shapes the initramfs, for its cache file name.
fn recipe_key() -> u64 {
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [RECIPE, INIT_SCRIPT, BUSYBOX]
        .into_iter()
        .chain(BOOT_MODULES.iter().copied())
        .chain(ON_DEMAND_MODULES.iter().copied())
        .chain(NOT_SCHEDULERS.iter().copied());
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The path of `tool`, looked up in `$PATH` and the sbin directories.
fn require(tool: &'static str, package: &'static str) -> Result<PathBuf, VmError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(VmError::MissingTool { tool, package })
}

/// Runs `command`, returning its stdout; a failure carries its stderr.
fn output(command: &mut Command) -> Result<Vec<u8>, VmError> {
    let line = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_error(format!("running {line}"), e))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(VmError::Command {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A name unique to this process and call, for run and scratch files.
fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.tmp", unique_id()))
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), VmError> {
    let tmp = temp_name(path);
    let result = fs::write(&tmp, contents).and_then(|()| fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(format!("writing {}", path.display()), e)
    })
}

fn copy_atomically(from: &Path, to: &Path) -> Result<(), VmError> {
    let tmp = temp_name(to);
    let result = fs::copy(from, &tmp).and_then(|_| fs::rename(&tmp, to));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(format!("copying {} to {}", from.display(), to.display()), e)
    })
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), VmError> {
    fs::write(path, contents).map_err(|e| io_error(format!("writing {}", path.display()), e))
}

fn create_dir(dir: &Path) -> Result<(), VmError> {
    fs::create_dir_all(dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))
}

fn io_error(what: impl Into<String>, source: io::Error) -> VmError {
    VmError::Io {
        what: what.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_between_markers_even_after_bios_noise() {
        let mut console = Console::new("42");
        console.push(b"SeaBIOS (version x)\r\nBooting\x1b[2J\nTANDEM-VM-");
        console.push(b"BEGIN 42\nhello\nno newline");
        assert_eq!(console.result(), None);
        console.push(b"\nTANDEM-VM-END 42 3");
        assert_eq!(console.result(), None);
        console.push(b"\n[ 9.1] reboot: Power down\n");
        let result = console.result().unwrap();
        assert_eq!(result.status, 3);
        assert_eq!(result.output, "hello\nno newline");
    }

    #[test]
    fn empty_output() {
        let mut console = Console::new("7");
        console.push(b"x\nTANDEM-VM-BEGIN 7\n\nTANDEM-VM-END 7 0\n");
        assert_eq!(
            console.result(),
            Some(VmOutput {
                status: 0,
                output: String::new()
            })
        );
    }

    #[test]
    fn module_paths() {
        assert_eq!(plain_ko("kernel/a/b-c.ko.xz"), "kernel/a/b-c.ko");
        assert_eq!(plain_ko("kernel/a/b.ko"), "kernel/a/b.ko");
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
            "crc32c_intel"
        );
    }

    #[test]
    fn cache_dir_must_be_visible_in_the_guest() {
        assert!(check_cache_dir(Path::new("/tmp/x")).is_err());
        assert!(check_cache_dir(Path::new("/var/tmp")).is_err());
        assert!(check_cache_dir(Path::new("/var/cache/a b")).is_err());
        assert!(check_cache_dir(Path::new("/var/cache/tandem-vm")).is_ok());
        assert!(check_cache_dir(Path::new("/tmpfoo")).is_ok());
    }

    #[test]
    fn host_busybox_is_recognised() {
        if let Ok(bytes) = fs::read(BUSYBOX) {
            assert!(is_static_elf(&bytes));
        }
        if let Ok(bytes) = fs::read("/bin/ls") {
            assert!(!is_static_elf(&bytes));
        }
    }
}
