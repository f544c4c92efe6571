//! What a real server on loopback sees of a probe: the HTTP request as
//! configured, from the source address configured; how the connection
//! ends: a reset by default, a FIN with `close: fin`, and never a FIN
//! before the reset (hyper shuts a connection down before it lets it go);
//! what an HTTP check makes of an answer (status codes, patterns, the body
//! cap); and what is left of an external check after it.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::io;
use std::path::Path;

use tandem_ipvsd::config::IpvsdConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Prober;
use crate::target::{Target, targets_of};

fn target(port: u16, check: &str) -> Target {
    let yaml = format!(
        "virtual_services:\n  - address: 198.51.100.10\n    port: 80\n    \
         check: {check}\n    reals:\n      - {{address: 127.0.0.1, port: {port}}}\n"
    );
    let config: IpvsdConfig = tandem_daemon::config::parse(Path::new("t.yaml"), &yaml).unwrap();
    targets_of(&config.virtual_services, &std::collections::BTreeMap::new()).remove(0)
}

/// What the server's next read after the probe's request gets: `Ok(0)` for
/// a FIN, a `ConnectionReset` error for a reset.
async fn end_seen_by_server(check: &str, answer: &'static [u8]) -> io::Result<usize> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = target(listener.local_addr().unwrap().port(), check);
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        if !answer.is_empty() {
            read_request(&mut stream).await;
            // Answered, and left open: a server that ignores
            // `Connection: close` sees how the client ends.
            stream.write_all(answer).await.unwrap();
        }
        stream.read(&mut [0u8; 64]).await
    });
    Prober::new().probe(&target).await.unwrap();
    server.await.unwrap()
}

async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the probe closed before its request ended");
        seen.extend_from_slice(&chunk[..n]);
    }
    seen
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn is_reset(end: &io::Result<usize>) -> bool {
    matches!(end, Err(e) if e.kind() == io::ErrorKind::ConnectionReset)
}

#[tokio::test]
async fn a_tcp_probe_ends_with_a_reset_unless_fin_is_asked() {
    let end = end_seen_by_server("{type: tcp}", b"").await;
    assert!(is_reset(&end), "{end:?}");
    let end = end_seen_by_server("{type: tcp, close: fin}", b"").await;
    assert_eq!(end.unwrap(), 0);
}

#[tokio::test]
async fn an_http_probe_sends_no_fin_before_its_reset() {
    let end = end_seen_by_server("{type: http}", OK).await;
    assert!(is_reset(&end), "a FIN came first: {end:?}");
    let end = end_seen_by_server("{type: http, close: fin}", OK).await;
    assert_eq!(end.unwrap(), 0);
}

#[tokio::test]
async fn an_http_probe_sends_the_request_its_check_describes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = target(
        listener.local_addr().unwrap().port(),
        "{type: http, method: HEAD, request: '/health?deep=1', virtualhost: www.example.test, \
         headers: {X-Probe: tandem, Accept: text/plain}}",
    );
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let request = read_request(&mut stream).await;
        stream.write_all(OK).await.unwrap();
        String::from_utf8(request).unwrap()
    });
    Prober::new().probe(&target).await.unwrap();
    let request = server.await.unwrap();
    let mut lines: Vec<&str> = request.split("\r\n").collect();
    assert_eq!(lines[0], "HEAD /health?deep=1 HTTP/1.1", "{request}");
    lines[1..].sort_unstable();
    assert_eq!(
        lines[1..],
        [
            "",
            "",
            "accept: text/plain",
            "connection: close",
            "host: www.example.test",
            "user-agent: tandem-checkd",
            "x-probe: tandem",
        ],
        "{request}"
    );
}

/// Whether the process in `pid_file` (written by the command) is gone
/// within a second: killed, it may take a moment to exit, and it may stay
/// a zombie until its new parent reaps it.
async fn gone(pid_file: &Path) -> bool {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..100 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        // "pid (comm) S ...": the state follows the command's closing paren.
        if stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// An external check whose shell leaves a `sleep` behind it (its pid in
/// `pid_file`), then does `then`.
fn leaving_a_child(pid_file: &Path, then: &str, timeout: &str) -> Target {
    target(
        80,
        &format!(
            "{{type: external, interval: 2s, timeout: {timeout}, command: [/bin/sh, -c, 'sleep 30 & echo $! > {0}.new && mv {0}.new {0}; {then}']}}",
            pid_file.display()
        ),
    )
}

#[tokio::test]
async fn an_external_check_killed_at_its_timeout_takes_its_children_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleep.pid");
    let target = leaving_a_child(&pid_file, "wait", "1s");
    let result = Prober::new().probe(&target).await;
    assert_eq!(result.unwrap_err().to_string(), "timeout after 1s");
    assert!(
        gone(&pid_file).await,
        "the check's child outlived its timeout"
    );
}

#[tokio::test]
async fn an_external_check_that_exits_is_judged_at_once_though_a_child_holds_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleep.pid");
    let started = tokio::time::Instant::now();
    let target = leaving_a_child(&pid_file, "echo lagging >&2; exit 3", "1s");
    let result = Prober::new().probe(&target).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "command: /bin/sh exit status: 3: lagging"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "waited for the child: {:?}",
        started.elapsed()
    );
    assert!(gone(&pid_file).await, "the check's child outlived it");
}

/// Serves one HTTP exchange on loopback: answers `answer` and returns
/// the address the probe came from.
async fn answering(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<std::net::SocketAddr>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut stream, from) = listener.accept().await.unwrap();
        read_request(&mut stream).await;
        stream.write_all(answer).await.unwrap();
        from
    });
    (port, server)
}

/// What an HTTP check makes of `answer`: `Ok` or the failure's reason.
async fn http_verdict(check: &str, answer: &'static [u8]) -> Result<(), String> {
    let (port, server) = answering(answer).await;
    let result = Prober::new().probe(&target(port, check)).await;
    server.await.unwrap();
    result.map_err(|e| e.to_string())
}

const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 18\r\n\r\nmaintenance: yes\r\n";

#[tokio::test]
async fn status_codes_body_patterns_and_the_body_cap_decide_an_http_check() {
    assert_eq!(
        http_verdict("{type: http}", UNAVAILABLE).await,
        Err("HTTP 503".into())
    );
    assert_eq!(
        http_verdict("{type: http, status_codes: [200, 503]}", UNAVAILABLE).await,
        Ok(())
    );
    let pattern =
        "{type: http, status_codes: [503], receive: 'maint\\w+: (yes|no)', receive_regex: true}";
    assert_eq!(http_verdict(pattern, UNAVAILABLE).await, Ok(()));
    // Only the first max_body_bytes are read: "yes" lies past 15 bytes.
    let capped = "{type: http, status_codes: [503], receive: 'yes', max_body_bytes: 15}";
    assert_eq!(
        http_verdict(capped, UNAVAILABLE).await,
        Err("body does not contain \"yes\"".into())
    );
    let uncapped = "{type: http, status_codes: [503], receive: 'yes', max_body_bytes: 16}";
    assert_eq!(http_verdict(uncapped, UNAVAILABLE).await, Ok(()));
}

#[tokio::test]
async fn probes_leave_from_the_source_address_they_are_given() {
    let (port, server) = answering(OK).await;
    let check = "{type: http, source: 127.0.0.2}";
    Prober::new().probe(&target(port, check)).await.unwrap();
    assert_eq!(server.await.unwrap().ip().to_string(), "127.0.0.2");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp = target(port, "{type: tcp, source: 127.0.0.3}");
    let prober = Prober::new();
    let (result, accepted) = tokio::join!(prober.probe(&tcp), listener.accept());
    result.unwrap();
    assert_eq!(accepted.unwrap().1.ip().to_string(), "127.0.0.3");

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let udp = target(
        port,
        "{type: udp, send: ping, receive: pong, source: 127.0.0.4}",
    );
    let answer = async {
        let mut buf = [0u8; 64];
        let (_, from) = socket.recv_from(&mut buf).await.unwrap();
        socket.send_to(b"pong", from).await.unwrap();
        from
    };
    let prober = Prober::new();
    let (result, from) = tokio::join!(prober.probe(&udp), answer);
    result.unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.4");
}
