//! `external`: ldirectord's `checktype=external`, keepalived's MISC_CHECK.
//! Runs the command (no shell) with the target in its environment; exit 0
//! is healthy. A command still running at the timeout is killed (the
//! probe's future is dropped and the child with it).

use std::process::Stdio;

use tokio::process::Command;

use super::ProbeError;
use crate::target::Target;

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
        .kill_on_drop(true);
    if let Some(vip) = target.virtual_addr {
        cmd.env("TANDEM_VIRTUAL_ADDRESS", vip.ip().to_string())
            .env("TANDEM_VIRTUAL_PORT", vip.port().to_string());
    }
    let output = cmd
        .output()
        .await
        .map_err(|e| ProbeError::Command(format!("{program}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first_line = stderr.lines().next().unwrap_or_default().trim();
    Err(ProbeError::Command(if first_line.is_empty() {
        format!("{program} {}", output.status)
    } else {
        format!("{program} {}: {first_line}", output.status)
    }))
}
