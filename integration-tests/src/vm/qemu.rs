//! Running a job in qemu (TCG): starting it, reading its serial console, cutting
//! the command's status and output from between init's markers, and killing
//! qemu on timeout. It boots what it is given and never builds anything.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use super::host::{io_error, require};
use super::job::Job;
use super::{VmError, VmOutput};

/// The line init prints, with the job id, before the command's output.
const BEGIN_MARKER: &str = "TANDEM-VM-BEGIN";
/// The line init prints, with the job id and exit status, after it.
const END_MARKER: &str = "TANDEM-VM-END";
/// How much of the console output errors quote.
const TAIL_BYTES: usize = 4000;

/// The host's qemu.
pub(super) struct Qemu(PathBuf);

impl Qemu {
    /// Fails if `qemu-system-x86_64` is missing.
    pub(super) fn find() -> Result<Self, VmError> {
        require("qemu-system-x86_64", "qemu-system-x86").map(Self)
    }

    /// Boots `kernel` with `initramfs` and the host root shared read-only over
    /// 9p, and waits for `job`'s result. Kills qemu and fails after `timeout`.
    pub(super) fn run(
        &self,
        kernel: &Path,
        initramfs: &Path,
        job: &Job,
        timeout: Duration,
    ) -> Result<VmOutput, VmError> {
        let mut command = Command::new(&self.0);
        command
            .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2"])
            .args(["-nodefaults", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-monitor", "none"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initramfs)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet {}",
                job.kernel_param()
            ))
            .args([
                "-virtfs",
                "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
            ]);
        let mut guest = Guest::start(&mut command)?;

        let deadline = SystemTime::now() + timeout;
        let mut console = Console::new(job.id());
        loop {
            if let Some(result) = console.result() {
                // The guest powers off by itself; give it a moment before killing.
                guest.wait_for_exit(Duration::from_secs(10));
                return Ok(result);
            }
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if left.is_zero() {
                guest.kill();
                return Err(VmError::Timeout {
                    timeout,
                    tail: console.tail(),
                });
            }
            match guest.console.recv_timeout(left) {
                Ok(chunk) => console.push(&chunk),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return console.result().ok_or_else(|| guest.exited(console.tail()));
                }
            }
        }
    }
}

/// A running qemu, killed on drop if still running. Threads read its console
/// (stdout) into a channel and collect its stderr.
struct Guest {
    child: Child,
    console: mpsc::Receiver<Vec<u8>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Guest {
    fn start(command: &mut Command) -> Result<Self, VmError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io_error("starting qemu", e))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        });
        let (tx, console) = mpsc::channel();
        if let Some(mut pipe) = child.stdout.take() {
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self {
            child,
            console,
            stderr,
        })
    }

    fn wait_for_exit(&mut self, grace: Duration) {
        let deadline = SystemTime::now() + grace;
        while SystemTime::now() < deadline {
            if !self.is_running() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The error for qemu exiting before the command finished: its exit status
    /// and stderr, and the console's `tail`.
    fn exited(&mut self, tail: String) -> VmError {
        let status = match self.child.wait() {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        VmError::Exited {
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            tail,
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// The console output seen so far, and where the command's output lies in it.
struct Console {
    bytes: Vec<u8>,
    begin: Vec<u8>,
    end: Vec<u8>,
    /// Where the command's output starts, once the begin marker was seen.
    start: Option<usize>,
    /// Where to resume looking for the next marker.
    scanned: usize,
}

impl Console {
    fn new(id: &str) -> Self {
        Self {
            bytes: Vec::new(),
            begin: format!("{BEGIN_MARKER} {id}").into_bytes(),
            end: format!("\n{END_MARKER} {id} ").into_bytes(),
            start: None,
            scanned: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.start.is_some() {
            return;
        }
        match find(&self.bytes, &self.begin, self.scanned) {
            Some(at) => {
                self.scanned = at;
                if let Some(nl) = find(&self.bytes, b"\n", at) {
                    self.start = Some(nl + 1);
                }
            }
            None => self.scanned = self.bytes.len().saturating_sub(self.begin.len()),
        }
    }

    /// The command's status and output, once the end marker's line is complete.
    fn result(&mut self) -> Option<VmOutput> {
        let start = self.start?;
        let at = find(&self.bytes, &self.end, self.scanned.max(start));
        let Some(at) = at else {
            self.scanned = self.bytes.len().saturating_sub(self.end.len());
            return None;
        };
        let rest = &self.bytes[at + self.end.len()..];
        let line_end = rest.iter().position(|&b| b == b'\n')?;
        let status = std::str::from_utf8(&rest[..line_end])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The marker's leading newline is ours (a CR too if the console adds them).
        let mut output = &self.bytes[start..at];
        if let [head @ .., b'\r'] = output {
            output = head;
        }
        Some(VmOutput {
            status,
            output: String::from_utf8_lossy(output).into_owned(),
        })
    }

    fn tail(&self) -> String {
        let from = self.bytes.len().saturating_sub(TAIL_BYTES);
        String::from_utf8_lossy(&self.bytes[from..]).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_between_markers_even_after_bios_noise() {
        let mut console = Console::new("42");
        console.push(b"SeaBIOS (version x)\r\nBooting\x1b[2J\nTANDEM-VM-");
        console.push(b"BEGIN 42\nhello\nno newline");
        assert_eq!(console.result(), None);
        console.push(b"\nTANDEM-VM-END 42 3");
        assert_eq!(console.result(), None);
        console.push(b"\n[ 9.1] reboot: Power down\n");
        let result = console.result().unwrap();
        assert_eq!(result.status, 3);
        assert_eq!(result.output, "hello\nno newline");
    }

    #[test]
    fn empty_output() {
        let mut console = Console::new("7");
        console.push(b"x\nTANDEM-VM-BEGIN 7\n\nTANDEM-VM-END 7 0\n");
        assert_eq!(
            console.result(),
            Some(VmOutput {
                status: 0,
                output: String::new()
            })
        );
    }

    #[test]
    fn init_prints_the_markers_the_console_looks_for() {
        use super::super::initramfs::INIT_SCRIPT;
        assert!(INIT_SCRIPT.contains(&format!("printf '\\n%s %s\\n' {BEGIN_MARKER} \"$id\"")));
        assert!(INIT_SCRIPT.contains(&format!(
            "printf '\\n%s %s %s\\n' {END_MARKER} \"$id\" \"$status\""
        )));
    }
}
