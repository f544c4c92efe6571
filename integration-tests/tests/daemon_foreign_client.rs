//! A gRPC client this project did not write — Python grpcio, driven by
//! server reflection the way grpcurl is — lists a daemon's services over its
//! Unix socket, checks grpc.health.v1 and calls GetStatus.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::PathBuf;
use std::process::Command;

use tandem_integration_tests::process::Daemon;

/// The Python with grpcio that `cargo xtask test` prepares.
fn python() -> PathBuf {
    let python = std::env::var_os("TANDEM_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tandem-venv/bin/python3"),
        PathBuf::from,
    );
    let ok = Command::new(&python)
        .args(["-c", "import grpc, grpc_health, grpc_reflection"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import grpcio: run `cargo xtask test` (it installs grpcio, grpcio-health-checking \
         and grpcio-reflection into target/tandem-venv) or set TANDEM_PYTHON",
        python.display()
    );
    python
}

#[test]
fn grpcio_lists_services_checks_health_and_calls_get_status() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vipd.sock");
    let mut vipd = Daemon::start("vipd", &["--listen", socket.to_str().unwrap()]);
    vipd.wait_for_socket(&socket);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/grpc_probe.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );

    for expected in [
        "\"grpc.health.v1.Health\"",
        "\"grpc.reflection.v1alpha.ServerReflection\"",
        "\"tandem.resource.v1.Resource\"",
        "\"health\": \"SERVING\"",
        "\"resource_health\": \"SERVING\"",
        "\"name\": \"vipd\"",
        "\"state\": \"STATE_STOPPED\"",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing from {stdout}"
        );
    }
}
