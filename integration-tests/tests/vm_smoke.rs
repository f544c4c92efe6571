//! Smoke test of the kernel VM tier: the guest kernel has IPVS, host tools run
//! in it, and the command's output and exit status come back intact.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::Duration;

use tandem_integration_tests::vm;

const HOW_TO_RUN: &str = "needs root and the VM tools: run `cargo xtask test` as root";

#[test]
fn guest_has_ipvs_and_reports_status_and_output() {
    tandem_integration_tests::require_root();
    let script = "\
echo first-line
grep '^ip_vs ' /proc/modules || echo 'ip_vs NOT LOADED'
ipvsadm -Ln
echo \"ipvsadm-status=$?\"
echo to-stderr >&2
printf last-line
exit 3";
    let out = vm::run(script, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("VM run failed: {e}\n(the VM smoke test {HOW_TO_RUN})"));
    println!("guest output:\n{}", out.output);

    assert_eq!(out.status, 3, "exit status of the guest command");
    assert!(
        out.output.starts_with("first-line\n"),
        "output must start with the command's first line, no boot noise: {:?}",
        out.output
    );
    assert!(
        out.output.ends_with("last-line"),
        "output must end exactly with what the command printed: {:?}",
        out.output
    );
    assert!(
        out.output.lines().any(|l| l.starts_with("ip_vs ")),
        "ip_vs is not in /proc/modules"
    );
    assert!(
        out.output.contains("IP Virtual Server version"),
        "no ipvsadm header"
    );
    assert!(
        out.output.contains("ipvsadm-status=0"),
        "ipvsadm -Ln failed"
    );
    assert!(out.output.contains("to-stderr\n"), "stderr is not captured");
}
