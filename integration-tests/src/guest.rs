//! Running one test's body inside the kernel VM: on the host, [`run_in_vm`]
//! boots the VM and re-runs this very test binary there (`--exact NAME`)
//! with `TANDEM_IN_VM=1`; in the guest, the same call runs the body. So a VM
//! test is one ordinary `#[test]`: no `#[ignore]`, nothing skipped.

use std::time::Duration;

/// Set in the guest's environment for the re-run test binary.
pub const IN_VM: &str = "TANDEM_IN_VM";

/// Set in the guest: the directory holding the staged workspace binaries.
pub const BIN_DIR: &str = "TANDEM_BIN_DIR";

/// Runs `body` in the VM as test `name` (its path in this test binary, e.g.
/// `reads_what_ipvsadm_wrote`); fails the test if it fails there.
pub fn run_in_vm(name: &str, timeout: Duration, body: impl FnOnce()) {
    run_in_vm_with(name, &[], timeout, body);
}

/// Like [`run_in_vm`], with workspace binaries `bins` (e.g. `ipvsd`) staged
/// for the guest, where [`crate::process::binary`] finds them.
pub fn run_in_vm_with(name: &str, bins: &[&str], timeout: Duration, body: impl FnOnce()) {
    if std::env::var_os(IN_VM).is_some() {
        body();
        return;
    }
    crate::require_root();
    let args = format!("--exact '{name}' --nocapture --test-threads 1");
    let out = run_self_in_vm_with(&args, bins, timeout);
    println!("--- guest output of {name} ---\n{}", out.output);
    assert_eq!(out.status, 0, "{name} failed in the VM (output above)");
    assert!(
        out.output.contains("test result: ok. 1 passed"),
        "{name} did not run in the VM (output above)"
    );
}

/// Boots the VM and runs the current executable there with `args` and
/// `TANDEM_IN_VM=1`. The executable is first copied into the VM cache
/// directory: the guest sees the host's root read-only but has its own empty
/// `/tmp`, where a clone (and so its `target/`) may live.
pub fn run_self_in_vm(args: &str, timeout: Duration) -> crate::vm::VmOutput {
    run_self_in_vm_with(args, &[], timeout)
}

/// [`run_self_in_vm`], staging workspace binaries `bins` beside it.
pub fn run_self_in_vm_with(args: &str, bins: &[&str], timeout: Duration) -> crate::vm::VmOutput {
    let exe = std::env::current_exe().expect("the test binary's path");
    let vm = crate::vm::prepare().unwrap_or_else(|e| panic!("preparing the VM: {e}"));
    let staged = vm
        .cache_dir
        .join("exec")
        .join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&staged).expect("creating the VM's exec directory");
    let name = exe
        .file_name()
        .map_or_else(|| "test".into(), |n| n.to_string_lossy().into_owned());
    let copy = |from: &std::path::Path, to: &str| {
        std::fs::copy(from, staged.join(to))
            .unwrap_or_else(|e| panic!("staging {}: {e}", from.display()));
    };
    copy(&exe, &name);
    for bin in bins {
        copy(&crate::process::binary(bin), bin);
    }
    let script = format!(
        "{IN_VM}=1 {BIN_DIR}='{dir}' RUST_BACKTRACE=1 '{dir}/{name}' {args}",
        dir = staged.display()
    );
    let result = vm.run(&script, timeout);
    let _ = std::fs::remove_dir_all(&staged);
    result.unwrap_or_else(|e| panic!("VM run of {name} {args}: {e}"))
}

/// Runs shell commands in the guest (from a test body) with `set -ex` and
/// returns their stdout; panics with stderr (which traces each command)
/// when one fails.
pub fn sh(command: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-exc", command])
        .output()
        .unwrap_or_else(|e| panic!("running `{command}`: {e}"));
    assert!(
        out.status.success(),
        "`{command}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
