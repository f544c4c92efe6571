//! Host plumbing the VM stages share: finding a tool, running it, unique names,
//! and file operations whose errors name the path. It knows nothing of kernels,
//! initramfs images or qemu.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::VmError;

/// The path of `tool`, looked up in `$PATH` and the sbin directories; if it is
/// missing, the error names the Debian `package` that provides it.
pub(super) fn require(tool: &'static str, package: &'static str) -> Result<PathBuf, VmError> {
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

/// Runs `command` (stdin `/dev/null`), returning its stdout; a failure carries
/// its stderr.
pub(super) fn output(command: &mut Command) -> Result<Vec<u8>, VmError> {
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

/// A name unique to this process and call, for run, scratch and temporary files.
pub(super) fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// Writes `contents` to `path` in place.
pub(super) fn write_file(path: &Path, contents: &[u8]) -> Result<(), VmError> {
    fs::write(path, contents).map_err(|e| io_error(format!("writing {}", path.display()), e))
}

/// Writes `contents` to `path` atomically (see [`replace`]).
pub(super) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), VmError> {
    replace(path, |tmp| fs::write(tmp, contents))
        .map_err(|e| io_error(format!("writing {}", path.display()), e))
}

/// Like [`write_atomically`], and syncs the file to disk before it takes the name.
pub(super) fn write_atomically_synced(path: &Path, contents: &[u8]) -> Result<(), VmError> {
    let write = |tmp: &Path| {
        let mut file = fs::File::create(tmp)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    replace(path, write).map_err(|e| io_error(format!("writing {}", path.display()), e))
}

/// Copies `from` to `to` atomically (see [`replace`]).
pub(super) fn copy_atomically(from: &Path, to: &Path) -> Result<(), VmError> {
    replace(to, |tmp| fs::copy(from, tmp).map(drop))
        .map_err(|e| io_error(format!("copying {} to {}", from.display(), to.display()), e))
}

/// Has `fill` write a temporary file beside `path`, then renames it to `path`, so
/// readers see the old file or the whole new one, never part of one. The
/// temporary file is removed if anything fails.
fn replace(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", unique_id()));
    let result = fill(&tmp).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its parents, if missing.
pub(super) fn create_dir(dir: &Path) -> Result<(), VmError> {
    fs::create_dir_all(dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))
}

/// Reads `path`.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, VmError> {
    fs::read(path).map_err(|e| io_error(format!("reading {}", path.display()), e))
}

/// Reads `path` as UTF-8 text.
pub(super) fn read_text(path: &Path) -> Result<String, VmError> {
    fs::read_to_string(path).map_err(|e| io_error(format!("reading {}", path.display()), e))
}

/// The entries of `dir`.
pub(super) fn read_dir(dir: &Path) -> Result<fs::ReadDir, VmError> {
    fs::read_dir(dir).map_err(|e| io_error(format!("listing {}", dir.display()), e))
}

/// A [`VmError::Io`]: `what` names the operation and its path.
pub(super) fn io_error(what: impl Into<String>, source: io::Error) -> VmError {
    VmError::Io {
        what: what.into(),
        source,
    }
}
