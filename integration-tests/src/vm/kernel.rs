//! The guest kernel package: which one `linux-image-amd64` depends on, fetching
//! it into the cache with `apt-get download`, and unpacking it with `dpkg-deb`.
//! It never installs anything on the host.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::VmError;
use super::host::{create_dir, io_error, output, read_dir, require, unique_id, write_atomically};

const META_PACKAGE: &str = "linux-image-amd64";

/// A kernel package, e.g. `linux-image-6.1.0-56-amd64`.
pub(super) struct Package {
    /// The package name.
    pub(super) name: String,
    /// The kernel release it ships, e.g. `6.1.0-56-amd64`.
    pub(super) version: String,
}

impl Package {
    /// The package the metapackage depends on. The answer is remembered in
    /// `cache_dir` until apt's package lists change.
    pub(super) fn resolve(cache_dir: &Path) -> Result<Self, VmError> {
        let name = package_name(cache_dir)?;
        let version = name
            .strip_prefix("linux-image-")
            .ok_or_else(|| VmError::Kernel(format!("unexpected package name {name}")))?
            .to_owned();
        Ok(Self { name, version })
    }
}

fn package_name(cache_dir: &Path) -> Result<String, VmError> {
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

/// Unpacks kernel packages; made only once the host has `dpkg-deb`.
pub(super) struct Unpacker {
    dpkg_deb: PathBuf,
}

/// A kernel package unpacked in a scratch directory, removed on drop.
pub(super) struct Unpacked {
    /// The kernel release.
    pub(super) version: String,
    /// The unpacked package's root.
    pub(super) root: PathBuf,
    /// The kernel image, `<root>/boot/vmlinuz-<version>`.
    pub(super) image: PathBuf,
    /// The module directory, `<root>/lib/modules/<version>`.
    pub(super) moddir: PathBuf,
    _scratch: Scratch,
}

impl Unpacker {
    /// Fails if `dpkg-deb` is missing.
    pub(super) fn find() -> Result<Self, VmError> {
        Ok(Self {
            dpkg_deb: require("dpkg-deb", "dpkg")?,
        })
    }

    /// Unpacks `package`, downloading its `.deb` into `dir` first if it is not
    /// there yet (about 70 MB). The scratch directory is made in `dir` too.
    pub(super) fn unpack(&self, dir: &Path, package: &Package) -> Result<Unpacked, VmError> {
        let version = &package.version;
        let scratch = Scratch::create(dir)?;
        let deb = download(dir, &scratch.0, &package.name)?;
        let root = scratch.0.join("root");
        output(Command::new(&self.dpkg_deb).arg("-x").arg(&deb).arg(&root))?;
        let image = root.join(format!("boot/vmlinuz-{version}"));
        let moddir = root.join("lib/modules").join(version);
        if !image.is_file() || !moddir.is_dir() {
            return Err(VmError::Kernel(format!(
                "{} lacks boot/vmlinuz-{version} or lib/modules/{version}",
                deb.display()
            )));
        }
        Ok(Unpacked {
            version: version.clone(),
            root,
            image,
            moddir,
            _scratch: scratch,
        })
    }
}

/// The package file in `dir`, downloaded (via `scratch`) if not there yet.
fn download(dir: &Path, scratch: &Path, package: &str) -> Result<PathBuf, VmError> {
    let is_ours = |p: &Path| {
        p.file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
    };
    let find_deb = |d: &Path| -> Result<Option<PathBuf>, VmError> {
        Ok(read_dir(d)?
            .flatten()
            .map(|e| e.path())
            .find(|p| is_ours(p)))
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

/// A scratch directory removed (with its contents) on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn create(parent: &Path) -> Result<Self, VmError> {
        let scratch = Self(parent.join(format!("build-{}", unique_id())));
        create_dir(&scratch.0)?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
