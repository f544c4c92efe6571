//! Project tasks, run as `cargo xtask <task>` (an alias in .cargo/config.toml):
//!
//! - `demo`: builds the daemons and walks them through the resource-ordering
//!   contract the way Heartbeat walked `haresources`.
//! - `test`: installs what the test tiers need (saying what it installs),
//!   then runs every tier — unit, process, namespace, kernel VM — and prints
//!   a count per tier. Tiers that need root fail, loudly, without it.

mod demo;
mod system;
mod tiers;

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "demo" => demo::run(),
        "test" => tiers::run(),
        _ => {
            eprintln!("usage: cargo xtask <demo|test>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask {task}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
