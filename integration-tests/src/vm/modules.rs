//! Which kernel modules the guest gets: the boot set init loads (with every
//! `ip_vs_*` scheduler the kernel ships) in dependency order, and the extras
//! shipped for on-demand loading, resolved with the host's `kmod` tools against
//! the unpacked package. Also the `modules.dep`/`modules.alias` lines busybox
//! `modprobe` reads. It picks and reads modules; the initramfs module packs them.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::VmError;
use super::host::{output, read, read_dir, read_text, require};
use super::kernel::Unpacked;

/// Modules the guest's init loads (with their dependencies), after which every
/// `ip_vs_*` scheduler the kernel ships is loaded too.
pub(super) const BOOT_MODULES: &[&str] = &[
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
pub(super) const ON_DEMAND_MODULES: &[&str] = &["dummy", "ip_gre", "vrf", "sch_tbf", "sch_htb"];
/// `ip_vs_*` modules that are not schedulers and are left out.
pub(super) const NOT_SCHEDULERS: &[&str] = &["ip_vs_ftp", "ip_vs_pe_sip"];

/// The host's `depmod` and `modprobe`, found before anything is downloaded.
pub(super) struct Kmod {
    depmod: PathBuf,
    modprobe: PathBuf,
}

/// The modules chosen from one kernel: paths relative to its module directory,
/// as the package names them (possibly compressed, e.g. `.ko.xz`).
pub(super) struct Modules {
    /// What init loads, in load order.
    pub(super) boot: Vec<String>,
    /// Everything shipped: `boot`, the on-demand modules and their dependencies.
    pub(super) files: BTreeSet<String>,
}

impl Kmod {
    /// Fails if `depmod` or `modprobe` is missing.
    pub(super) fn find() -> Result<Self, VmError> {
        Ok(Self {
            depmod: require("depmod", "kmod")?,
            modprobe: require("modprobe", "kmod")?,
        })
    }

    /// Indexes the unpacked kernel's modules (`depmod`) and picks the ones the
    /// guest gets, with their dependencies.
    pub(super) fn resolve(&self, kernel: &Unpacked) -> Result<Modules, VmError> {
        let version = kernel.version.as_str();
        output(
            Command::new(&self.depmod)
                .arg("-b")
                .arg(&kernel.root)
                .arg(version),
        )?;
        let show_depends = |name: &str| -> Result<Vec<String>, VmError> {
            let out = output(
                Command::new(&self.modprobe)
                    .arg("-d")
                    .arg(&kernel.root)
                    .args(["-S", version, "--show-depends", name]),
            )?;
            let prefix = format!("{}/", kernel.moddir.display());
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
            .chain(schedulers(&kernel.moddir)?)
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
        Ok(Modules { boot, files })
    }
}

impl Modules {
    /// The list init reads: the boot modules' plain `.ko` paths, one a line.
    pub(super) fn boot_list(&self) -> String {
        self.boot
            .iter()
            .map(|f| format!("{}\n", plain_ko(f)))
            .collect()
    }

    /// The directories, relative to the module directory, that hold `files`.
    pub(super) fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        for file in &self.files {
            let mut parent = Path::new(file).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_owned());
                parent = p.parent();
            }
        }
        dirs
    }

    /// The `modules.dep` lines of the shipped modules, with plain `.ko` names.
    pub(super) fn dep(&self, moddir: &Path) -> Result<String, VmError> {
        Ok(read_text(&moddir.join("modules.dep"))?
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(module, _)| self.files.contains(*module))
            .map(|(module, deps)| {
                let deps: String = deps
                    .split_whitespace()
                    .map(|d| format!(" {}", plain_ko(d)))
                    .collect();
                format!("{}:{deps}\n", plain_ko(module))
            })
            .collect())
    }

    /// The `modules.alias` lines of the shipped modules.
    pub(super) fn alias(&self, moddir: &Path) -> Result<String, VmError> {
        let names: BTreeSet<String> = self.files.iter().map(|f| module_name(f)).collect();
        Ok(read_text(&moddir.join("modules.alias"))?
            .lines()
            .filter(|l| l.rsplit(' ').next().is_some_and(|m| names.contains(m)))
            .map(|l| format!("{l}\n"))
            .collect())
    }
}

/// The `ip_vs_*` schedulers this kernel ships, e.g. `ip_vs_rr`.
fn schedulers(moddir: &Path) -> Result<Vec<String>, VmError> {
    let ipvs = moddir.join("kernel/net/netfilter/ipvs");
    let mut names: Vec<String> = read_dir(&ipvs)?
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
pub(super) fn plain_ko(file: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext).filter(|f| f.ends_with(".ko")))
        .unwrap_or(file)
}

/// A module's contents, decompressed on the host (busybox insmod may not be able to).
pub(super) fn module_bytes(path: &Path) -> Result<Vec<u8>, VmError> {
    let tool = match path.extension().and_then(OsStr::to_str) {
        Some("xz") => Some(("xz", "xz-utils")),
        Some("zst") => Some(("zstd", "zstd")),
        Some("gz") => Some(("gzip", "gzip")),
        _ => None,
    };
    match tool {
        Some((tool, package)) => output(Command::new(require(tool, package)?).arg("-dc").arg(path)),
        None => read(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        assert_eq!(plain_ko("kernel/a/b-c.ko.xz"), "kernel/a/b-c.ko");
        assert_eq!(plain_ko("kernel/a/b.ko"), "kernel/a/b.ko");
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
            "crc32c_intel"
        );
    }
}
