//! `external`: ldirectord's `checktype=external`, keepalived's MISC_CHECK.
//! Runs the command (no shell) with the target in its environment; exit 0
//! is healthy. The command runs in a process group of its own, without
//! checkd's ambient capabilities; the whole group is killed when the
//! command exits (so a background child cannot hold its stderr open) and
//! when the probe is dropped at its timeout (so nothing piles up).

use std::process::{ExitStatus, Stdio};

use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, Command};

use super::ProbeError;
use crate::target::Target;

/// How much of the command's stderr is kept for the reason.
const STDERR_KEPT: usize = 1024;

/// Runs `command` for `target`.
pub async fn probe(command: &[String], target: &Target) -> Result<(), ProbeError> {
    let Some((program, args)) = command.split_first() else {
        return Err(ProbeError::Unprobeable("command: empty".into()));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("TANDEM_REAL_ADDRESS", target.addr.ip().to_string())
        .env("TANDEM_REAL_PORT", target.addr.port().to_string())
        .env("TANDEM_SERVICE", &target.service_name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(vip) = target.virtual_addr {
        cmd.env("TANDEM_VIRTUAL_ADDRESS", vip.ip().to_string())
            .env("TANDEM_VIRTUAL_PORT", vip.port().to_string());
    }
    without_ambient_capabilities(&mut cmd);
    let failed = |e: std::io::Error| ProbeError::Command(format!("{program}: {e}"));
    let mut child = cmd.spawn().map_err(failed)?;
    let group = child.id().and_then(Group::of);
    let mut stderr = child.stderr.take();
    let mut said = Vec::new();
    let status = {
        // Drained while the command runs: a full pipe would stall it.
        let drain = read_kept(stderr.as_mut(), &mut said);
        tokio::pin!(drain);
        tokio::select! {
            status = child.wait() => status,
            () = &mut drain => child.wait().await,
        }
    }
    .map_err(failed)?;
    drop(group);
    // Whatever the group left running is gone now: the rest comes at once.
    read_kept(stderr.as_mut(), &mut said).await;
    verdict(program, status, &said)
}

/// Exit 0 is healthy; otherwise the status and stderr's first line.
fn verdict(program: &str, status: ExitStatus, stderr: &[u8]) -> Result<(), ProbeError> {
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(stderr);
    let first_line = stderr.lines().next().unwrap_or_default().trim();
    Err(ProbeError::Command(if first_line.is_empty() {
        format!("{program} {status}")
    } else {
        format!("{program} {status}: {first_line}")
    }))
}

/// Reads `stderr` to its end, keeping the first [`STDERR_KEPT`] bytes in
/// `kept`; read errors end it.
async fn read_kept(stderr: Option<&mut ChildStderr>, kept: &mut Vec<u8>) {
    let Some(stderr) = stderr else {
        return;
    };
    let mut chunk = [0u8; 512];
    while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// The command's process group, killed when this is dropped.
struct Group(Pid);

impl Group {
    fn of(leader: u32) -> Option<Self> {
        Pid::from_raw(i32::try_from(leader).ok()?).map(Self)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // ESRCH: the group has already ended.
        let _ended = rustix::process::kill_process_group(self.0, Signal::KILL);
    }
}

/// The unit gives checkd `CAP_NET_ADMIN` and `CAP_NET_RAW` as ambient
/// capabilities; an operator's check script gets neither.
#[allow(
    unsafe_code,
    reason = "pre_exec: the closure runs in the child between fork and exec"
)]
fn without_ambient_capabilities(cmd: &mut Command) {
    // SAFETY: the closure only makes one prctl system call, which is
    // async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| Ok(rustix::thread::clear_ambient_capability_set()?));
    }
}
