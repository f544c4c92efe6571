//! ipvsd as a real process on the host (no kernel IPVS here, so the table
//! is held STOPPED): `tandem.ipvs.v1` over its Unix socket from a gRPC
//! client and from tandemctl. Changes are kept and listed, Watch streams
//! them, bad requests are refused naming the field, and a file applies
//! with a dry run first. Kernel effects are in the VM tier.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_daemon::client::connect_unix;
use tandem_integration_tests::process::{Daemon, binary};
use tandem_proto::ipvs::v1 as pb;
use tandem_proto::ipvs::v1::ipvs_client::IpvsClient;
use tonic::transport::Channel;

const CONFIG: &str = "
virtual_services:
  - name: web
    address: 198.51.100.10
    port: 80
    scheduler: rr
    forward: tunnel
    check: {type: http, request: /health, receive: ok}
    reals:
      - address: 198.51.100.11
      - address: 198.51.100.12
";

struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    _ipvsd: Daemon,
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipvsd.sock");
    let config = dir.path().join("ipvsd.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut ipvsd = Daemon::start(
        "ipvsd",
        &[
            "--listen",
            socket.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    ipvsd.wait_for_socket(&socket);
    Running {
        _dir: dir,
        socket,
        _ipvsd: ipvsd,
    }
}

async fn client(socket: &Path) -> IpvsClient<Channel> {
    IpvsClient::new(connect_unix(socket).await.unwrap())
}

fn web() -> pb::ServiceKey {
    pb::ServiceKey {
        protocol: pb::Protocol::Tcp.into(),
        address: "198.51.100.10".into(),
        port: 80,
        ..pb::ServiceKey::default()
    }
}

fn tandemctl(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("tandemctl"))
        .args(["--socket", socket.to_str().unwrap(), "ipvs"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn changes_are_kept_listed_and_streamed_to_watchers() {
    let ipvsd = start();
    let mut watcher = client(&ipvsd.socket)
        .await
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = watcher.message().await.unwrap().unwrap();
    assert_eq!(first.services[0].reals.len(), 2);
    let check = first.services[0].check.clone().unwrap();
    assert_eq!(check.r#type(), pb::CheckType::Http);
    assert_eq!(check.request, "/health");

    let change = client(&ipvsd.socket)
        .await
        .put_real(pb::PutRealRequest {
            service: Some(web()),
            real: Some(pb::RealServer {
                address: "198.51.100.13".into(),
                weight: Some(2),
                ..pb::RealServer::default()
            }),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(change.applied);
    assert!(change.plan.is_empty(), "STOPPED: nothing goes to a kernel");
    let second = watcher.message().await.unwrap().unwrap();
    assert_eq!(second.version, change.version);
    assert_eq!(second.services[0].reals.len(), 3);

    let (ok, list) = tandemctl(&ipvsd.socket, &["list"]);
    assert!(ok, "{list}");
    assert!(list.contains("not in the kernel (STOPPED)"), "{list}");
    assert!(list.contains("TCP 198.51.100.10:80 rr"), "{list}");
    assert!(list.contains("-> 198.51.100.13:80"), "{list}");

    let (ok, rules) = tandemctl(&ipvsd.socket, &["export"]);
    assert!(ok, "{rules}");
    assert!(
        rules.contains("-a -t 198.51.100.10:80 -r 198.51.100.13:80 -i -w 2"),
        "{rules}"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field_and_change_nothing() {
    let ipvsd = start();
    let mut c = client(&ipvsd.socket).await;
    let before = c
        .list_services(pb::ListServicesRequest {})
        .await
        .unwrap()
        .into_inner()
        .version;
    let err = c
        .put_service(pb::PutServiceRequest {
            service: Some(pb::VirtualService {
                address: "198.51.100.20".into(),
                port: 0,
                ..pb::VirtualService::default()
            }),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("service.port:"),
        "{}",
        err.message()
    );

    let err = c
        .put_real(pb::PutRealRequest {
            service: Some(web()),
            real: Some(pb::RealServer {
                address: "198.51.100.11".into(),
                port: Some(8080),
                ..pb::RealServer::default()
            }),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("real.port:"), "{}", err.message());

    let after = c
        .list_services(pb::ListServicesRequest {})
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(before, after);
}

#[tokio::test]
async fn tandemctl_applies_a_file_after_a_dry_run_and_drains_at_once_when_stopped() {
    let ipvsd = start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("ipvsadm.rules");
    std::fs::write(
        &rules,
        "-A -t 198.51.100.10:80 -s wrr\n-a -t 198.51.100.10:80 -r 198.51.100.21:80 -g -w 3\n",
    )
    .unwrap();
    let (ok, dry) = tandemctl(
        &ipvsd.socket,
        &["apply", "--rules", "--dry-run", rules.to_str().unwrap()],
    );
    assert!(ok && dry.contains("dry run"), "{dry}");
    let (_, list) = tandemctl(&ipvsd.socket, &["list"]);
    assert!(
        list.contains("198.51.100.11"),
        "a dry run changed the table:\n{list}"
    );

    let (ok, done) = tandemctl(
        &ipvsd.socket,
        &["apply", "--rules", rules.to_str().unwrap()],
    );
    assert!(ok && done.contains("applied"), "{done}");
    let (_, list) = tandemctl(&ipvsd.socket, &["list"]);
    assert!(list.contains("TCP 198.51.100.10:80 wrr"), "{list}");
    assert!(!list.contains("198.51.100.11"), "{list}");

    let (ok, drained) = tandemctl(&ipvsd.socket, &["drain", "198.51.100.21", "--wait"]);
    assert!(ok, "{drained}");
    assert!(
        drained.contains("198.51.100.21:80 drained, 0 active"),
        "{drained}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "virtual_services:\n  - address: 198.51.100.10\n    port: 80\n    scheduler: fastest\n",
    )
    .unwrap();
    let (ok, refused) = tandemctl(&ipvsd.socket, &["apply", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        refused.contains("virtual_services[0].scheduler"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_killed_ipvsd_restarts_from_its_state_file_unless_the_config_was_edited() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipvsd.sock");
    let config = dir.path().join("ipvsd.yaml");
    let state = dir.path().join("table.pb");
    std::fs::write(
        &config,
        format!("state_file: {}\n{CONFIG}", state.display()),
    )
    .unwrap();
    let args = [
        "--listen",
        socket.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let run = || {
        let mut d = Daemon::start("ipvsd", &args);
        d.wait_for_socket(&socket);
        d
    };
    let first = run();
    let (ok, _) = tandemctl(&socket, &["drain", "198.51.100.12"]);
    assert!(ok);
    client(&socket)
        .await
        .put_real(pb::PutRealRequest {
            service: Some(web()),
            real: Some(pb::RealServer {
                address: "198.51.100.13".into(),
                ..pb::RealServer::default()
            }),
            dry_run: false,
        })
        .await
        .unwrap();
    first.signal(rustix::process::Signal::KILL);
    drop(first);

    let second = run();
    let (_, list) = tandemctl(&socket, &["list"]);
    assert!(
        list.contains("-> 198.51.100.13:80"),
        "API change lost:\n{list}"
    );
    let drained = list
        .lines()
        .find(|l| l.contains("198.51.100.12:80"))
        .unwrap();
    assert!(drained.contains("drained"), "drain lost:\n{list}");
    second.signal(rustix::process::Signal::KILL);
    drop(second);

    // The operator edits the file's services: the file wins.
    let edited = std::fs::read_to_string(&config)
        .unwrap()
        .replace("scheduler: rr", "scheduler: wlc");
    std::fs::write(&config, edited).unwrap();
    let _third = run();
    let (_, list) = tandemctl(&socket, &["list"]);
    assert!(list.contains("TCP 198.51.100.10:80 wlc"), "{list}");
    assert!(!list.contains("198.51.100.13"), "{list}");
}
