//! Instructions per probe, counted rather than timed: checkd and then the
//! floor each run under callgrind (valgrind) on [`ADDRESSES`] × 100
//! loopback targets; counting starts once every target has been probed and
//! ends with the window. A count hardly moves with a busy host, as CPU
//! seconds do, so it is the figure to compare two builds by
//! (`TANDEM_BIN_DIR`). It is user space alone: the kernel's work is not
//! counted, and at this rate (500 probes/s, under valgrind's slowdown) a
//! probe shares fewer wake-ups with others than at 10,000/s.

use std::path::Path;
use std::process::Command;

/// Addresses of the counted run: 500 targets, which checkd under
/// callgrind keeps up with at a 1 s interval.
pub const ADDRESSES: u8 = 5;

/// `valgrind` counting instructions in `program`, from when [`start`]
/// says, dumping to `out.1` at the first [`dump`].
pub fn command(program: &Path, out: &Path) -> Command {
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--instr-atstart=no", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(program);
    command
}

/// Starts counting, from zero, in the callgrind process `pid`.
pub fn start(pid: u32) {
    control(pid, "--instr=on");
    control(pid, "--zero");
}

/// Ends the count of callgrind process `pid` (see [`counted`]).
pub fn dump(pid: u32) {
    control(pid, "--dump");
}

/// The instructions counted from [`start`] to [`dump`], read from the
/// dump of the process started with `out` (see [`command`]).
pub fn counted(out: &Path) -> u64 {
    let dumped = format!("{}.1", out.display());
    let text = std::fs::read_to_string(&dumped).unwrap_or_else(|e| panic!("reading {dumped}: {e}"));
    text.lines()
        .find_map(|line| line.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("{dumped} has no `summary:` line"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{dumped}'s summary: {e}"))
}

fn control(pid: u32, what: &str) {
    let out = Command::new("callgrind_control")
        .arg(what)
        .arg(pid.to_string())
        .output()
        .expect("running callgrind_control");
    assert!(
        out.status.success(),
        "callgrind_control {what} {pid}: {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
