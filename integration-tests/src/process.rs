//! Running the workspace's own binaries (the daemons, tandemctl) as real
//! processes, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of workspace binary `name`: in the VM, where the harness staged
/// it; otherwise next to the running test's target directory. Panics with
/// the command to run when it has not been built.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(crate::guest::BIN_DIR) {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`; `cargo xtask test` does this)",
        path.display()
    );
    path
}

/// The socket [`Daemon::start_configured`] gives daemon `name` in `dir`.
pub fn socket_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// A daemon process, killed on drop if still running.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts workspace binary `name` with `args` (stdout and stderr inherited, so
    /// its logs appear with a failing test's output).
    pub fn start(name: &str, args: &[&str]) -> Self {
        let child = Command::new(binary(name))
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child }
    }

    /// Starts workspace binary `name` with `args`, its stdout and stderr
    /// written to `log`.
    pub fn start_logging(name: &str, args: &[&str], log: &Path) -> Self {
        Self::start_logging_env(name, args, log, &[])
    }

    /// [`Daemon::start_logging`] with extra environment variables.
    pub fn start_logging_env(name: &str, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary(name));
        command.args(args).envs(env.iter().copied());
        Self::spawn_logging(name, command, log)
    }

    /// Starts workspace binary `name` with `args` inside network namespace
    /// `ns`, its stdout and stderr written to `log`.
    pub fn start_in(ns: &crate::netns::Netns, name: &str, args: &[&str], log: &Path) -> Self {
        let mut command = ns.command(&binary(name).to_string_lossy());
        command.args(args);
        Self::spawn_logging(name, command, log)
    }

    /// Spawns `command`, which runs workspace binary `name` (perhaps under
    /// a wrapper that execs it, as `ip netns exec` and `taskset` do), its
    /// stdout and stderr written to `log`.
    pub fn spawn_logging(name: &str, mut command: Command, log: &Path) -> Self {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = file.try_clone().expect("cloning the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child }
    }

    /// Starts workspace daemon `name` in `ns` with `config` written to
    /// `dir/<name>.yaml`, serving on [`socket_in`]`(dir, name)` (a stale
    /// socket from an earlier run is removed) and logging to
    /// `dir/<name>.log`; returns once the socket accepts connections.
    pub fn start_configured(
        ns: &crate::netns::Netns,
        name: &str,
        dir: &Path,
        config: &str,
    ) -> Self {
        Self::start_configured_via(ns, name, dir, config, &[], &[])
    }

    /// [`Daemon::start_configured`] with extra environment variables, and
    /// under `wrapper` (a command that execs its arguments, as `setpriv`
    /// does) unless it is empty.
    pub fn start_configured_via(
        ns: &crate::netns::Netns,
        name: &str,
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, config).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        let socket = socket_in(dir, name);
        let _ = std::fs::remove_file(&socket);
        let (file, listen) = (file.to_string_lossy(), socket.to_string_lossy());
        let args = ["--config", file.as_ref(), "--listen", listen.as_ref()];
        let program = binary(name);
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = ns.command(first);
                command.args(rest).arg(&program);
                command
            }
            None => ns.command(&program.to_string_lossy()),
        };
        command.args(args).envs(env.iter().copied());
        let mut process = Self::spawn_logging(name, command, &dir.join(format!("{name}.log")));
        process.wait_for_socket(&socket);
        process
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `socket` accepts connections (or panics after 10 s, or if the
    /// process exited).
    pub fn wait_for_socket(&mut self, socket: &Path) {
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "daemon exited before serving {}: {status}",
                    socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not accept connections within 10 s",
            socket.display()
        );
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"))
            .expect("a live child has a pid");
        rustix::process::kill_process(pid, signal).expect("signalling the daemon");
    }

    /// Waits up to `limit` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let steps = limit.as_millis() / 20;
        for _ in 0..=steps {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}
