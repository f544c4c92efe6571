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

// The stages, each in its own module: `kernel` fetches and unpacks the kernel
// package, `modules` picks its modules, `initramfs` packs them with busybox and
// the init script (through `cpio`), `job` writes a run's command files and `qemu`
// boots the guest and reads the result off its console. `host` is the plumbing
// they share. This module holds the public API and the cache directory.
mod cpio;
mod host;
mod initramfs;
mod job;
mod kernel;
mod modules;
mod qemu;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use host::{copy_atomically, create_dir, io_error, write_atomically_synced};
use initramfs::BUSYBOX;

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "TANDEM_VM_CACHE";
/// Cache directory used when [`CACHE_ENV`] is unset. It must not be under `/tmp`,
/// `/run` or `/var/tmp`: those are fresh tmpfs in the guest, which must read the
/// per-run command files from it.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/tandem-vm";

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
    let package = kernel::Package::resolve(&cache_dir)?;
    let dir = cache_dir.join(&package.version);
    let kernel = dir.join("vmlinuz");
    let initramfs = dir.join(initramfs::file_name());
    if !(kernel.is_file() && initramfs.is_file()) {
        create_dir(&dir)?;
        build(&dir, &package, &kernel, &initramfs)?;
    }
    Ok(Prepared {
        cache_dir,
        kernel_version: package.version,
        kernel,
        initramfs,
    })
}

impl Prepared {
    /// Like [`run`], with this kernel and initramfs.
    pub fn run(&self, script: &str, timeout: Duration) -> Result<VmOutput, VmError> {
        let qemu = qemu::Qemu::find()?;
        let job = job::Job::write(&self.cache_dir, script)?;
        qemu.run(&self.kernel, &self.initramfs, &job, timeout)
    }
}

/// Downloads and unpacks `package` in `dir` and writes `kernel` and `initramfs`.
/// Every host tool is looked for before the download.
fn build(
    dir: &Path,
    package: &kernel::Package,
    kernel: &Path,
    initramfs: &Path,
) -> Result<(), VmError> {
    let unpacker = kernel::Unpacker::find()?;
    let builder = initramfs::Builder::find()?;
    let unpacked = unpacker.unpack(dir, package)?;
    let image = builder.build(&unpacked)?;
    copy_atomically(&unpacked.image, kernel)?;
    write_atomically_synced(initramfs, &image)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_must_be_visible_in_the_guest() {
        assert!(check_cache_dir(Path::new("/tmp/x")).is_err());
        assert!(check_cache_dir(Path::new("/var/tmp")).is_err());
        assert!(check_cache_dir(Path::new("/var/cache/a b")).is_err());
        assert!(check_cache_dir(Path::new("/var/cache/tandem-vm")).is_ok());
        assert!(check_cache_dir(Path::new("/tmpfoo")).is_ok());
    }
}
