//! Running the operator's commands: the fence (STONITH) command, which
//! must succeed within its timeout before a takeover from a peer that was
//! ACTIVE, and the notify command, run on every role change. No shell: the
//! program and its arguments come from the config; facts come as
//! environment variables (`TANDEM_*`).

use std::process::Stdio;

use crate::config::CommandSpec;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("{program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited non-zero or was killed.
    #[error("{program} failed: {status}")]
    Failed {
        /// The program.
        program: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// It ran past its timeout and was killed.
    #[error("{program} did not finish within {}", humantime::format_duration(*timeout))]
    TimedOut {
        /// The program.
        program: String,
        /// The limit.
        timeout: std::time::Duration,
    },
}

/// Runs `spec` with `env` added to hbd's environment; kills it at the
/// timeout.
pub async fn run(spec: &CommandSpec, env: &[(&str, String)]) -> Result<(), CommandError> {
    let program = spec.command.first().cloned().unwrap_or_default();
    let mut child = tokio::process::Command::new(&program)
        .args(&spec.command[1..])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    match tokio::time::timeout(spec.timeout, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Err(CommandError::TimedOut {
                program,
                timeout: spec.timeout,
            })
        }
        Ok(Err(source)) => Err(CommandError::Spawn { program, source }),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(CommandError::Failed { program, status }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(command: &[&str], timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn success_failure_timeout_and_env() {
        let env = [("TANDEM_PEER", "b".to_owned())];
        assert!(
            run(
                &spec(&["sh", "-c", "test \"$TANDEM_PEER\" = b"], 5000),
                &env
            )
            .await
            .is_ok()
        );
        let failed = run(&spec(&["sh", "-c", "exit 3"], 5000), &env).await;
        assert!(
            matches!(failed, Err(CommandError::Failed { .. })),
            "{failed:?}"
        );
        let slow = run(&spec(&["sleep", "5"], 100), &env).await;
        assert!(
            matches!(slow, Err(CommandError::TimedOut { .. })),
            "{slow:?}"
        );
        let missing = run(&spec(&["/nonexistent/fence"], 100), &env).await;
        assert!(
            matches!(missing, Err(CommandError::Spawn { .. })),
            "{missing:?}"
        );
    }
}
