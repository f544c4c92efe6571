//! Real daemon processes, reached by real gRPC clients: over the Unix socket
//! and over TCP with mutual TLS (refused without a certificate from the
//! configured CA); config errors under `--check-config`; SIGHUP and SIGTERM.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tandem_daemon::client::{ClientTls, connect_tcp, connect_unix};
use tandem_integration_tests::http_get;
use tandem_integration_tests::pki::TestPki;
use tandem_integration_tests::process::{Daemon, binary};
use tandem_proto::resource::v1 as pb;
use tandem_proto::resource::v1::resource_client::ResourceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_status(channel: Channel) -> Result<pb::ResourceStatus, tonic::Status> {
    ResourceClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// A TLS channel presenting `identity` (or none); connect errors count as refusals.
async fn tls_status(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<pb::ResourceStatus, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("vipd");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    get_status(channel).await.map_err(|e| format!("call: {e}"))
}

#[tokio::test]
async fn unix_and_mutual_tls_clients_reach_get_status_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "vipd");
    let socket = dir.path().join("vipd.sock");
    let addr = format!("127.0.0.1:{}", free_tcp_port());
    let mut vipd = Daemon::start(
        "vipd",
        &[
            "--listen",
            socket.to_str().unwrap(),
            "--tcp-listen",
            &addr,
            "--tls-cert",
            pki.server.0.to_str().unwrap(),
            "--tls-key",
            pki.server.1.to_str().unwrap(),
            "--tls-client-ca",
            pki.ca.to_str().unwrap(),
        ],
    );
    vipd.wait_for_socket(&socket);

    let over_unix = get_status(connect_unix(&socket).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        (over_unix.name.as_str(), over_unix.state()),
        ("vipd", pb::State::Stopped)
    );

    let client_tls = ClientTls {
        ca: pki.ca.clone(),
        cert: pki.client.0.clone(),
        key: pki.client.1.clone(),
        server_name: "vipd".into(),
    };
    let over_tcp = get_status(connect_tcp(&addr, &client_tls).await.unwrap())
        .await
        .unwrap();
    assert_eq!(over_tcp.name, "vipd");

    let anonymous = tls_status(&addr, &pki.ca, None).await;
    assert!(
        anonymous.is_err(),
        "a TLS client without a certificate was served: {anonymous:?}"
    );
    let rogue = tls_status(
        &addr,
        &pki.ca,
        Some((&pki.rogue_client.0, &pki.rogue_client.1)),
    )
    .await;
    assert!(
        rogue.is_err(),
        "a client certificate from another CA was accepted: {rogue:?}"
    );

    let plaintext = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await;
        match channel {
            Ok(channel) => get_status(channel).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let plaintext = tokio::time::timeout(Duration::from_secs(10), plaintext).await;
    assert!(!matches!(plaintext, Ok(Ok(_))), "plaintext TCP was served");
}

#[tokio::test]
async fn a_transition_over_the_socket_is_seen_by_a_second_client() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vipd.sock");
    let mut vipd = Daemon::start("vipd", &["--listen", socket.to_str().unwrap()]);
    vipd.wait_for_socket(&socket);
    let mut client = ResourceClient::new(connect_unix(&socket).await.unwrap());
    let mut watch = client
        .watch_status(pb::WatchStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().state(),
        pb::State::Stopped
    );

    let reply = client
        .transition(pb::TransitionRequest {
            target: pb::State::Standby.into(),
            epoch: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.changed);
    let stale = client
        .transition(pb::TransitionRequest {
            target: pb::State::Active.into(),
            epoch: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);

    let mut last = watch.message().await.unwrap().unwrap();
    while last.state() != pb::State::Standby {
        last = watch.message().await.unwrap().unwrap();
    }
    assert_eq!(last.epoch, 3);
}

fn check_config(config: &str, dir: &Path) -> (i32, String) {
    let path = dir.join("checkd.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary("checkd"))
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_names_file_line_and_field_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("never.sock");
    let file = dir.path().join("checkd.yaml");
    let file = file.display();
    let cases = [
        (
            "unknown field",
            format!(
                "daemon:\n  socket: {}\n  metric_listen: 127.0.0.1:9100\n",
                socket.display()
            ),
            3,
            "daemon.metric_listen",
        ),
        (
            "wrong type",
            format!("daemon:\n  socket: {}\n  log_format: 7\n", socket.display()),
            3,
            "daemon.log_format",
        ),
        (
            "bad address",
            format!(
                "daemon:\n  socket: {}\n  metrics_listen: 198.51.100.300:9100\n",
                socket.display()
            ),
            3,
            "daemon.metrics_listen",
        ),
    ];
    for (what, config, line, field) in cases {
        let (code, text) = check_config(&config, dir.path());
        assert_eq!(code, 78, "{what}: exit code; output: {text}");
        assert!(
            text.contains(&format!("{file}:{line}:")),
            "{what}: no file:line in {text}"
        );
        assert!(
            text.contains(&format!("field `{field}`")),
            "{what}: no field in {text}"
        );
        assert!(!socket.exists(), "{what}: something started");
    }
    let (code, text) = check_config(
        &format!("daemon:\n  socket: {}\n", socket.display()),
        dir.path(),
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("config OK"), "{text}");
    assert!(!socket.exists(), "--check-config started the daemon");
}

#[test]
fn tcp_without_mutual_tls_is_refused_at_startup() {
    let out = Command::new(binary("vipd"))
        .args(["--check-config", "--tcp-listen", "127.0.0.1:7443"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only with mutual TLS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_serving_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("checkd.sock");
    let config = dir.path().join("checkd.yaml");
    std::fs::write(
        &config,
        format!("daemon:\n  socket: {}\n", socket.display()),
    )
    .unwrap();
    let mut checkd = Daemon::start("checkd", &["--config", config.to_str().unwrap()]);
    checkd.wait_for_socket(&socket);

    std::fs::write(&config, "daemon:\n  sockett: nope\n").unwrap();
    checkd.signal(rustix::process::Signal::HUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        checkd.is_running(),
        "a bad config on SIGHUP stopped the daemon"
    );
    get_status(connect_unix(&socket).await.unwrap())
        .await
        .unwrap();

    checkd.signal(rustix::process::Signal::TERM);
    // Wait off the runtime, so this test's idle connection sees the GOAWAY and closes.
    let (status, _checkd) =
        tokio::task::spawn_blocking(move || (checkd.wait_exit(Duration::from_secs(2)), checkd))
            .await
            .unwrap();
    let status = status.expect("exit within 2 s of SIGTERM, before the 3 s grace runs out");
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists(), "the socket file was left behind");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let socket = dir.path().join("vipd.sock");
    let child = Command::new(binary("vipd"))
        .args(["--listen", socket.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .unwrap();
    let mut vipd = ChildGuard(child);

    let mut heard = Vec::new();
    let mut buf = [0u8; 512];
    while !heard.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = listener.recv(&mut buf).expect("a notification within 10 s");
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        heard[0].contains("READY=1"),
        "first notification: {heard:?}"
    );

    let pid = rustix::process::Pid::from_raw(i32::try_from(vipd.0.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    loop {
        let n = listener.recv(&mut buf).expect("STOPPING=1 within 10 s");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    assert_eq!(vipd.0.wait().unwrap().code(), Some(0));
}

/// Kills the child on drop, so a failed assertion leaves nothing running.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_example_config_in_deploy_passes_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let daemon = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let out = Command::new(binary(&daemon))
            .args(["--check-config", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "one example per daemon in {}", dir.display());
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipvsd.sock");
    let addr = format!("127.0.0.1:{}", free_tcp_port());
    let mut ipvsd = Daemon::start(
        "ipvsd",
        &[
            "--listen",
            socket.to_str().unwrap(),
            "--metrics-listen",
            &addr,
        ],
    );
    ipvsd.wait_for_socket(&socket);

    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_build_info{daemon=\"ipvsd\",version=\""),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert!(http_get(&addr, "/other").starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn ipvsd_without_kernel_ipvs_refuses_standby_and_says_why() {
    // The host kernel has no IPVS (the VM tier has): ipvsd starts, serves,
    // and refuses to become STANDBY rather than pretend.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipvsd.sock");
    let mut ipvsd = Daemon::start("ipvsd", &["--listen", socket.to_str().unwrap()]);
    ipvsd.wait_for_socket(&socket);
    let mut client = ResourceClient::new(connect_unix(&socket).await.unwrap());
    let refused = client
        .transition(pb::TransitionRequest {
            target: pb::State::Standby.into(),
            epoch: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted);
    assert!(
        refused.message().contains("no IPVS"),
        "{}",
        refused.message()
    );
    let status = get_status(connect_unix(&socket).await.unwrap())
        .await
        .unwrap();
    assert_eq!(status.state(), pb::State::Stopped);
    assert!(status.detail.contains("no IPVS"), "{}", status.detail);
}
