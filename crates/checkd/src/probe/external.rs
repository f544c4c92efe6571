//! `external`: ldirectord's `checktype=external`, keepalived's MISC_CHECK.
//! Runs the command (no shell) with the target in its environment; exit 0
//! is healthy. The command runs in a process group of its own; the whole
//! group is killed when the command exits (so a background child cannot
//! hold its stderr open) and when the probe is dropped at its timeout (so
//! nothing piles up). It inherits no ambient capabilities: checkd drops
//! them at start ([`crate::drop_ambient_capabilities`]).

use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};
use tokio::process::{ChildStderr, Command};

use super::ProbeError;
use crate::target::Target;

/// How much of the command's stderr is kept for the reason.
const STDERR_KEPT: usize = 1024;
/// How long stderr may stay open once the group is killed (a process that
/// left the group, or one stuck in the kernel, may hold it).
const STDERR_AFTER_EXIT: Duration = Duration::from_millis(100);

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
    let failed = |e: std::io::Error| ProbeError::Command(format!("{program}: {e}"));
    let mut child = cmd.spawn().map_err(failed)?;
    // Declared after the child, so dropped before it: at the timeout the
    // group goes while its leader is still unreaped and its id taken.
    let (Some(group), Some(mut stderr)) = (child.id().and_then(Group::of), child.stderr.take())
    else {
        unreachable!("a child just spawned, with stderr piped, has both");
    };
    let exited = group.exit_watch().map_err(failed)?;
    let mut said = Vec::new();
    {
        // Drained while the command runs: a full pipe would stall it.
        let drain = read_kept(&mut stderr, &mut said);
        tokio::pin!(drain);
        tokio::select! {
            ready = exited.readable() => drop(ready.map_err(failed)?),
            () = &mut drain => drop(exited.readable().await.map_err(failed)?),
        }
    }
    // The leader has exited but is not reaped: its group id cannot have
    // been handed out again.
    drop(group);
    let status = child.wait().await.map_err(failed)?;
    let _late = tokio::time::timeout(STDERR_AFTER_EXIT, read_kept(&mut stderr, &mut said)).await;
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
async fn read_kept(stderr: &mut ChildStderr, kept: &mut Vec<u8>) {
    let mut chunk = [0u8; 512];
    while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// The command's process group (its leader's id), killed when this is
/// dropped.
struct Group(Pid);

impl Group {
    fn of(leader: u32) -> Option<Self> {
        Pid::from_raw(i32::try_from(leader).ok()?).map(Self)
    }

    /// Readable once the leader has exited (a pidfd: it does not reap).
    #[allow(
        unsafe_code,
        reason = "tokio's AsyncFd registration asks the caller to vouch for the fd"
    )]
    fn exit_watch(&self) -> std::io::Result<AsyncFd<OwnedFd>> {
        let pidfd = rustix::process::pidfd_open(self.0, PidfdFlags::empty())?;
        // SAFETY: an OwnedFd is open until it is dropped, which the AsyncFd
        // owning it does last, and its raw fd never changes.
        unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // ESRCH: the group has already ended.
        let _ended = rustix::process::kill_process_group(self.0, Signal::KILL);
    }
}
