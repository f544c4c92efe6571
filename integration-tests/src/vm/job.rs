//! A run's job files, which the guest's init reads from the host root over 9p:
//! `<path>.sh` holds the command and `<path>.cwd` the directory to run it in,
//! and the kernel command line names `<path>`. They are removed on drop.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::VmError;
use super::host::{create_dir, unique_id, write_file};

/// One run's job files.
pub(super) struct Job {
    /// `<cache>/runs/<id>`; valid UTF-8, as it goes on the kernel command line.
    path: PathBuf,
    id: String,
}

impl Job {
    /// Writes `script` and the current directory (`/` if there is none) as a
    /// new job under `cache_dir`.
    pub(super) fn write(cache_dir: &Path, script: &str) -> Result<Self, VmError> {
        let runs = cache_dir.join("runs");
        create_dir(&runs)?;
        let id = unique_id();
        let job = Self {
            path: runs.join(&id),
            id,
        };
        write_file(&job.file("sh"), script.as_bytes())?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        write_file(&job.file("cwd"), cwd.as_os_str().as_bytes())?;
        if job.path.to_str().is_none() {
            return Err(VmError::CacheDir {
                path: cache_dir.to_owned(),
                reason: "not valid UTF-8".into(),
            });
        }
        Ok(job)
    }

    /// The job's name, which init prints in its begin and end markers.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The kernel command-line parameter that hands the job to init.
    pub(super) fn kernel_param(&self) -> String {
        format!("tandem_job={}", self.path.display())
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.path.with_extension(ext)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.file("sh"));
        let _ = std::fs::remove_file(self.file("cwd"));
    }
}
