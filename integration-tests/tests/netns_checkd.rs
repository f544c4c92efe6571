//! Tier 2: checkd against real servers in namespaces, reporting to a real
//! ipvsd. A director namespace runs both daemons (ipvsd has no IPVS on the
//! host kernel, so it stays STOPPED, but it takes checkd's reports and
//! derives effective weights from them); real-server namespaces on the
//! same LAN run HTTP, HTTPS, TCP, UDP and DNS servers whose answers the
//! tests change: HTTP 500, a wrong body, a hung server, a stopped one
//! (RST), a TLS handshake that fails, a link that goes down; and each
//! other kind's wrong answer, silence and hang. checkd's `/metrics` is
//! scraped from inside the director.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_integration_tests::capture::{Capture, Frame};
use tandem_integration_tests::netns::{Host, Lan};
use tandem_integration_tests::pki::TestPki;
use tandem_integration_tests::process::{Daemon, binary};
use tandem_integration_tests::servers::{
    HttpMode, HttpServer, banner_server, dns_server, recording_tls, self_signed_tls, tcp_responder,
    udp_echo, udp_responder,
};
use tandem_integration_tests::{block_on, http_get};
use tandem_proto::check::v1 as cpb;
use tandem_proto::ipvs::v1 as ipb;
use tonic::transport::Channel;

/// Where checkd serves `/metrics`, inside the director namespace.
const METRICS: &str = "127.0.0.1:9100";

/// The value of the sample `series` (name and labels, as exported) in
/// Prometheus text `metrics`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

/// Two daemons in a director namespace on a LAN.
struct Director {
    lan: Lan,
    host: Host,
    dir: tempfile::TempDir,
    ipvsd: Option<Daemon>,
    checkd: Option<Daemon>,
}

impl Director {
    fn new(label: &str) -> Self {
        tandem_integration_tests::require_root();
        let lan = Lan::new(label).unwrap();
        let host = lan.host("dir", "198.51.100.1/24").unwrap();
        Self {
            lan,
            host,
            dir: tempfile::tempdir().unwrap(),
            ipvsd: None,
            checkd: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `daemon` in the director with `config` as its file.
    fn start(&self, daemon: &str, config: &str) -> Daemon {
        Daemon::start_configured(&self.host.ns, daemon, self.dir.path(), config)
    }

    fn start_ipvsd(&mut self, services: &str) {
        self.ipvsd = Some(self.start("ipvsd", services));
    }

    fn start_checkd(&mut self) {
        self.start_checkd_via(&[], &[]);
    }

    fn checkd_config(&self) -> String {
        format!(
            "ipvsd_socket: {}\nmaintenance_dir: {}\nreconnect_max: 500ms\n\
             daemon:\n  metrics_listen: {METRICS}\n",
            self.path("ipvsd.sock").display(),
            self.path("maintenance").display()
        )
    }

    /// Starts checkd with extra environment variables, under `wrapper` (a
    /// command that execs its arguments) unless it is empty.
    fn start_checkd_via(&mut self, env: &[(&str, &str)], wrapper: &[&str]) {
        self.checkd = Some(Daemon::start_configured_via(
            &self.host.ns,
            "checkd",
            self.dir.path(),
            &self.checkd_config(),
            env,
            wrapper,
        ));
    }

    fn real(&self, label: &str, addr: &str) -> Host {
        self.lan.host(label, &format!("{addr}/24")).unwrap()
    }

    async fn check(&self) -> cpb::check_client::CheckClient<Channel> {
        let channel = tandem_daemon::client::connect_unix(&self.path("checkd.sock"))
            .await
            .unwrap();
        cpb::check_client::CheckClient::new(channel)
    }

    /// checkd's `/metrics`, scraped from inside the director.
    fn metrics(&self) -> String {
        self.host
            .ns
            .enter(|| http_get(METRICS, "/metrics"))
            .unwrap()
    }

    fn targets(&self) -> cpb::ListTargetsResponse {
        block_on(async {
            self.check()
                .await
                .list_targets(cpb::ListTargetsRequest {})
                .await
                .unwrap()
                .into_inner()
        })
    }

    fn services(&self) -> ipb::ListServicesResponse {
        block_on(async {
            let channel = tandem_daemon::client::connect_unix(&self.path("ipvsd.sock"))
                .await
                .unwrap();
            ipb::ipvs_client::IpvsClient::new(channel)
                .list_services(ipb::ListServicesRequest {})
                .await
                .unwrap()
                .into_inner()
        })
    }

    fn tandemctl(&self, args: &[&str]) -> String {
        let socket = self.path("checkd.sock");
        let out = Command::new(binary("tandemctl"))
            .args(["--socket", socket.to_str().unwrap(), "check"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tandemctl check {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until checkd reports `real` (ADDR:PORT) with `health`; returns
    /// the target. Panics after 10 s with checkd's view and log.
    fn wait_target(&self, real: &str, health: ipb::Health) -> cpb::Target {
        for _ in 0..200 {
            let list = self.targets();
            if let Some(t) = list.targets.iter().find(|t| key(t.key.as_ref()) == real)
                && t.health() == health
            {
                return t.clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{real} never became {health:?}; checkd sees:\n{}\nlog:\n{}",
            self.tandemctl(&["list"]),
            std::fs::read_to_string(self.path("checkd.log")).unwrap_or_default()
        );
    }

    /// Waits until each real (ADDR:PORT) is down with a last result whose
    /// reason contains the text paired with it.
    fn wait_all_down(&self, expect: &[(&str, &str)]) {
        for (real, why) in expect {
            let t = self.wait_target(real, ipb::Health::Down);
            assert!(
                reason(&t).contains(why),
                "{real}: {:?} lacks {why:?}",
                reason(&t)
            );
        }
    }

    /// Waits until `real` (ADDR:PORT), whose packets go nowhere, is down
    /// for want of an answer: `timeout` or, once ARP gave up, unreachable.
    fn wait_unanswered(&self, real: &str, timeout: &str) {
        let t = self.wait_target(real, ipb::Health::Down);
        assert!(
            [timeout, "unreachable"]
                .iter()
                .any(|w| reason(&t).contains(w)),
            "{real}: {}",
            reason(&t)
        );
    }

    /// Waits until ipvsd shows `real` in `service` (by name) with `health`
    /// and `weight` (None: not in the kernel table); returns its detail.
    fn wait_ipvsd(
        &self,
        service: &str,
        real: &str,
        health: ipb::Health,
        weight: Option<u32>,
    ) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            let table = self.services();
            let found = table
                .services
                .iter()
                .filter(|s| s.service.as_ref().is_some_and(|v| v.name == service))
                .flat_map(|s| s.reals.iter())
                .find(|r| {
                    r.real
                        .as_ref()
                        .is_some_and(|x| format!("{}:{}", x.address, r.port) == real)
                });
            if let Some(r) = found {
                if r.health() == health && r.effective_weight == weight {
                    return r.health_detail.clone();
                }
                last = format!(
                    "{:?} weight {:?} ({})",
                    r.health(),
                    r.effective_weight,
                    r.health_detail
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ipvsd never showed {service} {real} {health:?} weight {weight:?}; last: {last}");
    }
}

fn key(k: Option<&cpb::TargetKey>) -> String {
    k.map(|k| format!("{}:{}", k.address, k.port))
        .unwrap_or_default()
}

fn sock(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn reason(t: &cpb::Target) -> String {
    t.last
        .as_ref()
        .map(|l| l.reason.clone())
        .unwrap_or_default()
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn rise_and_fall_count_exactly_and_flapping_within_fall_never_goes_down() {
    let mut d = Director::new("ck-rf");
    let real = d.real("r1", "198.51.100.21");
    let server = HttpServer::start(&real.ns, sock("198.51.100.21:80"), None);
    // Answers by probe number: up at #2 (rise 2); nine flapping answers,
    // never three failures in a row (fall 3); down at #14; a success and a
    // failure; up at #18.
    server.script("++--+--+--+---+-++");
    // checkd subscribes before it has targets: ipvsd starts after, so the
    // first probe cannot run before the watch is open.
    d.start_checkd();
    let checkd_socket = d.path("checkd.sock");
    let transitions = std::thread::scope(|scope| {
        let watcher = scope.spawn(move || {
            block_on(async {
                let channel = tandem_daemon::client::connect_unix(&checkd_socket)
                    .await
                    .unwrap();
                let mut stream = cpb::check_client::CheckClient::new(channel)
                    .watch_transitions(cpb::WatchTransitionsRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                let mut seen = Vec::new();
                while seen.len() < 3 {
                    match tokio::time::timeout(Duration::from_secs(15), stream.message()).await {
                        Ok(Ok(Some(t))) => seen.push(t),
                        other => panic!("transition stream: {other:?} after {seen:?}"),
                    }
                }
                // Three more intervals: nothing else may happen.
                let extra =
                    tokio::time::timeout(Duration::from_millis(700), stream.message()).await;
                assert!(extra.is_err(), "an extra transition: {extra:?}");
                seen
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        d.start_ipvsd(
            "virtual_services:\n  - name: web\n    address: 198.51.100.10\n    port: 80\n    forward: masq\n    \
             check: {type: http, interval: 200ms, timeout: 150ms, rise: 2, fall: 3, receive: Test Page}\n    \
             reals:\n      - address: 198.51.100.21\n",
        );
        watcher.join().unwrap()
    });
    let moves: Vec<(ipb::Health, ipb::Health)> =
        transitions.iter().map(|t| (t.from(), t.to())).collect();
    assert_eq!(
        moves,
        [
            (ipb::Health::Unspecified, ipb::Health::Up),
            (ipb::Health::Up, ipb::Health::Down),
            (ipb::Health::Down, ipb::Health::Up),
        ]
    );
    let answers = server.answers();
    assert!(answers.len() >= 18, "{} answers", answers.len());
    // Each transition lies between the answer that caused it and the next.
    for (t, after) in transitions.iter().zip([2usize, 14, 18]) {
        let (caused, next) = (
            unix_ms(answers[after - 1].0),
            answers.get(after).map(|a| unix_ms(a.0)),
        );
        assert!(
            caused <= t.at_unix_ms && next.is_none_or(|n| t.at_unix_ms <= n),
            "transition {:?} at {} ms is not between answer #{after} ({caused}) and the next ({next:?})",
            t.to(),
            t.at_unix_ms
        );
    }
    assert!(
        transitions[1].reason.contains("HTTP 500"),
        "{}",
        transitions[1].reason
    );
    // Each transition logged once, not each probe.
    let log = std::fs::read_to_string(d.path("checkd.log")).unwrap();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("real server down"), 1, "{log}");
    assert_eq!(lines("real server health"), 2, "{log}");
    d.wait_ipvsd("web", "198.51.100.21:80", ipb::Health::Up, Some(1));
}

#[test]
fn each_failure_names_its_reason_and_weights_follow() {
    let mut d = Director::new("ck-fail");
    let names = ["ok", "500", "body", "hang", "rst", "link"];
    let reals: Vec<Host> = names
        .iter()
        .enumerate()
        .map(|(i, n)| d.real(n, &format!("198.51.100.{}", 21 + i)))
        .collect();
    let mut http: Vec<HttpServer> = reals
        .iter()
        .map(|h| HttpServer::start(&h.ns, SocketAddr::new(h.addr.into(), 80), None))
        .collect();
    let tls = self_signed_tls("www.example.test");
    let _https_ok = HttpServer::start(&reals[0].ns, sock("198.51.100.21:443"), Some(tls.clone()));
    let _https_verified = HttpServer::start(&reals[1].ns, sock("198.51.100.22:443"), Some(tls));
    // Plain HTTP where HTTPS is expected: the handshake fails.
    let _plain = HttpServer::start(&reals[2].ns, sock("198.51.100.23:443"), None);

    let web_reals: String = (21..27)
        .map(|i| format!("      - address: 198.51.100.{i}\n"))
        .collect();
    d.start_ipvsd(&format!(
        "virtual_services:\n  - name: web\n    address: 198.51.100.10\n    port: 80\n    forward: masq\n    \
         quiescent: true\n    check: {{type: http, interval: 300ms, timeout: 200ms, rise: 1, fall: 1, \
         receive: Test Page, virtualhost: www.example.test}}\n    reals:\n{web_reals}  \
         - name: secure\n    address: 198.51.100.10\n    port: 443\n    forward: masq\n    quiescent: false\n    \
         check: {{type: https, interval: 300ms, timeout: 200ms, rise: 1, fall: 1, virtualhost: www.example.test}}\n    \
         reals:\n      - address: 198.51.100.21\n      - address: 198.51.100.22\n        \
         check: {{type: https, interval: 300ms, timeout: 200ms, rise: 1, fall: 1, virtualhost: www.example.test, verify_tls: true}}\n      \
         - address: 198.51.100.23\n"
    ));
    d.start_checkd();
    for i in 21..27 {
        d.wait_target(&format!("198.51.100.{i}:80"), ipb::Health::Up);
    }
    d.wait_target("198.51.100.21:443", ipb::Health::Up);

    http[1].set(HttpMode::Error);
    http[2].set(HttpMode::WrongBody);
    http[3].set(HttpMode::Hang);
    http[4].stop();
    reals[5].ns.ip(&["link", "set", "eth0", "down"]).unwrap();

    let expect = [
        ("198.51.100.22:80", "HTTP 500"),
        ("198.51.100.23:80", "body does not contain \"Test Page\""),
        ("198.51.100.24:80", "timeout after 200ms"),
        ("198.51.100.25:80", "connect: connection refused"),
        ("198.51.100.22:443", "TLS: invalid peer certificate"),
        ("198.51.100.23:443", "TLS: "),
    ];
    d.wait_all_down(&expect);
    d.wait_unanswered("198.51.100.26:80", "timeout after 200ms");
    let healthy = d.wait_target("198.51.100.21:80", ipb::Health::Up);
    assert!(healthy.probes > 0);
    assert_eq!(healthy.last_failure, None, "the healthy real never failed");

    // Quiescent: a down real keeps its place at weight 0, with the reason.
    let detail = d.wait_ipvsd("web", "198.51.100.22:80", ipb::Health::Down, Some(0));
    assert!(detail.contains("HTTP 500"), "{detail}");
    d.wait_ipvsd("web", "198.51.100.21:80", ipb::Health::Up, Some(1));
    // Not quiescent: a down real leaves the table.
    d.wait_ipvsd("secure", "198.51.100.22:443", ipb::Health::Down, None);
    d.wait_ipvsd("secure", "198.51.100.21:443", ipb::Health::Up, Some(1));

    // Recovery: rise 1 brings it back at its weight.
    http[1].set(HttpMode::Ok);
    d.wait_target("198.51.100.22:80", ipb::Health::Up);
    d.wait_ipvsd("web", "198.51.100.22:80", ipb::Health::Up, Some(1));
}

#[test]
fn the_default_check_finds_a_dead_real_within_three_seconds() {
    let mut d = Director::new("ck-dflt");
    let r1 = d.real("r1", "198.51.100.21");
    let r2 = d.real("r2", "198.51.100.22");
    let mut stopped = HttpServer::start(&r1.ns, sock("198.51.100.21:80"), None);
    let hung = HttpServer::start(&r2.ns, sock("198.51.100.22:80"), None);
    // No timing given: 1 s interval, 800 ms timeout, rise and fall 2.
    d.start_ipvsd(
        "virtual_services:\n  - name: web\n    address: 198.51.100.10\n    port: 80\n    forward: masq\n    \
         check: {type: http}\n    reals:\n      - address: 198.51.100.21\n      - address: 198.51.100.22\n",
    );
    d.start_checkd();
    for real in ["198.51.100.21:80", "198.51.100.22:80"] {
        d.wait_target(real, ipb::Health::Up);
    }
    let died = unix_ms(SystemTime::now());
    hung.set(HttpMode::Hang);
    stopped.stop();
    // The worst case: the last answer just before the failure, then two
    // failed probes an interval apart, the second after its timeout:
    // 1 s + 1 s + 800 ms.
    for (real, why) in [
        ("198.51.100.21:80", "connect: connection refused"),
        ("198.51.100.22:80", "timeout after 800ms"),
    ] {
        let t = d.wait_target(real, ipb::Health::Down);
        let last = t.last.unwrap();
        assert_eq!(last.reason, why, "{real}");
        let after = last.at_unix_ms - died;
        assert!(after <= 3000, "{real} went down {after} ms after it died");
        println!("{real}: down {after} ms after it died ({why})");
    }
}

#[test]
fn https_checks_ask_for_the_virtualhost_by_sni_and_verify_against_the_trust_store() {
    let mut d = Director::new("ck-tls");
    let real = d.real("r1", "198.51.100.21");
    let pki = TestPki::new(d.dir.path(), "www.example.test");
    let (tls, sni) = recording_tls(&pki.server.0, &pki.server.1);
    let _https = HttpServer::start(&real.ns, sock("198.51.100.21:443"), Some(tls));
    let check = |port: u16, host: &str| {
        format!(
            "  - name: {host}\n    address: 198.51.100.10\n    port: {port}\n    forward: masq\n    \
             check: {{type: https, interval: 300ms, timeout: 250ms, rise: 1, fall: 1, \
             virtualhost: {host}, verify_tls: true}}\n    reals:\n      \
             - {{address: 198.51.100.21, port: 443}}\n"
        )
    };
    // The same real under two names: the certificate is for one of them.
    d.start_ipvsd(&format!(
        "virtual_services:\n{}{}",
        check(443, "www.example.test"),
        check(8443, "other.example.test")
    ));
    // The test CA is the trust store (rustls-native-certs reads SSL_CERT_FILE).
    let ca = pki.ca.to_str().unwrap().to_owned();
    d.start_checkd_via(&[("SSL_CERT_FILE", &ca)], &[]);
    d.wait_ipvsd(
        "www.example.test",
        "198.51.100.21:443",
        ipb::Health::Up,
        Some(1),
    );
    let detail = d.wait_ipvsd(
        "other.example.test",
        "198.51.100.21:443",
        ipb::Health::Down,
        Some(0),
    );
    assert!(
        detail.starts_with(
            "TLS: invalid peer certificate: certificate not valid for name \"other.example.test\""
        ),
        "{detail}"
    );
    let asked = sni.lock().unwrap().clone();
    for name in ["www.example.test", "other.example.test"] {
        assert!(
            asked.iter().any(|n| n.as_deref() == Some(name)),
            "no hello asked for {name}: {asked:?}"
        );
    }
    assert!(
        asked.iter().all(Option::is_some),
        "a hello without SNI: {asked:?}"
    );
}

#[test]
fn tcp_banner_udp_dns_icmp_and_external_checks_pass_and_fail_each_with_its_reason() {
    let mut d = Director::new("ck-kinds");
    // .31 answers right; .32 runs no server (refused); .33 answers wrong;
    // .34 accepts and never answers (or says the name does not exist);
    // .35 is no host at all.
    let up = d.real("up", "198.51.100.31");
    let _silent = d.real("silent", "198.51.100.32");
    let wrong = d.real("wrong", "198.51.100.33");
    let hung = d.real("hung", "198.51.100.34");
    let at = |host: &Host, port: u16| SocketAddr::new(host.addr.into(), port);
    banner_server(&up.ns, at(&up, 25), "220 mail.example.test ESMTP ready\r\n");
    banner_server(&wrong.ns, at(&wrong, 25), "554 no service here\r\n");
    tcp_responder(&hung.ns, at(&hung, 25), None);
    tcp_responder(&up.ns, at(&up, 6379), Some(b"+PONG\r\n"));
    tcp_responder(
        &wrong.ns,
        at(&wrong, 6379),
        Some(b"-ERR unknown command\r\n"),
    );
    tcp_responder(&hung.ns, at(&hung, 6379), None);
    udp_echo(&up.ns, at(&up, 7));
    udp_responder(&wrong.ns, at(&wrong, 7), Some(b"nope"));
    udp_responder(&hung.ns, at(&hung, 7), None);
    let vip = "198.51.100.10".parse().unwrap();
    dns_server(&up.ns, at(&up, 53), Some(vip));
    dns_server(
        &wrong.ns,
        at(&wrong, 53),
        Some("198.51.100.99".parse().unwrap()),
    );
    dns_server(&hung.ns, at(&hung, 53), None);

    let timing = "interval: 300ms, timeout: 200ms, rise: 1, fall: 1";
    let service = |name: &str, proto: &str, port: u16, check: &str, reals: &[u8]| {
        let reals: String = reals
            .iter()
            .map(|r| format!("      - address: 198.51.100.{r}\n"))
            .collect();
        format!(
            "  - name: {name}\n    protocol: {proto}\n    address: 198.51.100.10\n    port: {port}\n    \
             forward: masq\n    check: {{{check}, {timing}}}\n    reals:\n{reals}"
        )
    };
    let all = [31, 32, 33, 34];
    let config = [
        service("smtp", "tcp", 25, "type: tcp, receive: '^220 .*ESMTP', receive_regex: true", &all),
        service("kv", "tcp", 6379, "type: tcp, send: PING, receive: +PONG", &all),
        service("echo", "udp", 7, "type: udp, send: ping, receive: pong", &all),
        service("dns", "udp", 53, "type: dns, query_name: www.example.test, receive: 198.51.100.10", &all),
        service("ping", "tcp", 8080, "type: icmp", &[31, 32, 35]),
        service(
            "ext",
            "tcp",
            9090,
            "type: external, command: [/bin/sh, -c, 'case $TANDEM_REAL_ADDRESS:$TANDEM_REAL_PORT in \
             198.51.100.31:9090) exit 0;; 198.51.100.33:9090) sleep 5;; *) echo \"not the one\" >&2; exit 2;; esac']",
            &[31, 32, 33],
        ),
    ]
    .concat();
    d.start_ipvsd(&format!("virtual_services:\n{config}"));
    d.start_checkd();
    for port in [25, 6379, 7, 53, 8080, 9090] {
        d.wait_target(&format!("198.51.100.31:{port}"), ipb::Health::Up);
    }
    d.wait_target("198.51.100.32:8080", ipb::Health::Up); // the host answers pings
    let expect = [
        ("198.51.100.32:25", "connect: connection refused"),
        ("198.51.100.33:25", "reply does not match /^220 .*ESMTP/"),
        ("198.51.100.34:25", "timeout after 200ms"),
        ("198.51.100.32:6379", "connect: connection refused"),
        ("198.51.100.33:6379", "reply does not contain \"+PONG\""),
        ("198.51.100.34:6379", "timeout after 200ms"),
        ("198.51.100.32:7", "receive: connection refused"),
        ("198.51.100.33:7", "reply does not contain \"pong\""),
        ("198.51.100.34:7", "timeout after 200ms"),
        ("198.51.100.32:53", "receive: connection refused"),
        (
            "198.51.100.33:53",
            "DNS: no A answer does contain \"198.51.100.10\" (got 198.51.100.99)",
        ),
        ("198.51.100.34:53", "DNS: response code Non-Existent Domain"),
        ("198.51.100.32:9090", "exit status: 2: not the one"),
        ("198.51.100.33:9090", "timeout after 200ms"),
    ];
    d.wait_all_down(&expect);
    d.wait_unanswered("198.51.100.35:8080", "timeout after 200ms");
    for port in [25, 6379, 7, 53, 8080, 9090] {
        let t = d.wait_target(&format!("198.51.100.31:{port}"), ipb::Health::Up);
        assert_eq!(t.last_failure, None, "198.51.100.31:{port} never failed");
    }

    // The same, as Prometheus sees it: 22 targets, 7 up.
    let metrics = d.metrics();
    assert_eq!(
        sample(&metrics, "tandem_checkd_targets{health=\"up\"}"),
        7.0
    );
    assert_eq!(
        sample(&metrics, "tandem_checkd_targets{health=\"down\"}"),
        15.0
    );
    assert_eq!(
        sample(&metrics, "tandem_checkd_targets{health=\"unknown\"}"),
        0.0
    );
    assert_eq!(sample(&metrics, "tandem_checkd_ipvsd_connected"), 1.0);
    for kind in ["tcp", "udp", "dns", "icmp", "external"] {
        for result in ["ok", "failed"] {
            let series =
                format!("tandem_checkd_probes_total{{type=\"{kind}\",result=\"{result}\"}}");
            assert!(sample(&metrics, &series) > 0.0, "{series}");
        }
        let latencies = format!("tandem_checkd_probe_duration_seconds_count{{type=\"{kind}\"}}");
        assert!(sample(&metrics, &latencies) > 0.0, "{latencies}");
    }
    assert!(sample(&metrics, "tandem_checkd_transitions_total{health=\"down\"}") >= 15.0);
}

#[test]
fn an_external_check_runs_without_checkds_ambient_capabilities() {
    let mut d = Director::new("ck-caps");
    d.start_ipvsd(
        "virtual_services:\n  - name: ext\n    address: 198.51.100.10\n    port: 9090\n    forward: masq\n    \
         check: {type: external, interval: 300ms, timeout: 250ms, rise: 1, fall: 1, command: [/bin/sh, -c, \
         'grep -q \"^CapAmb:[[:space:]]*0*$\" /proc/self/status || { grep CapAmb /proc/self/status >&2; exit 1; }']}\n    \
         reals:\n      - address: 198.51.100.31\n",
    );
    // As the unit runs it: CAP_NET_RAW (and CAP_NET_ADMIN) ambient. A
    // command so started keeps it (the control); checkd drops it at start.
    let ambient = [
        "setpriv",
        "--inh-caps",
        "+net_raw",
        "--ambient-caps",
        "+net_raw",
    ];
    let control = Command::new(ambient[0])
        .args(&ambient[1..])
        .args(["/bin/sh", "-c", "grep CapAmb /proc/self/status"])
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(control.contains("0000000000002000"), "{control}");
    d.start_checkd_via(&[], &ambient);
    let t = d.wait_target("198.51.100.31:9090", ipb::Health::Up);
    assert_eq!(t.last_failure, None, "the command saw ambient capabilities");
}

#[test]
fn checkd_rereports_after_ipvsd_restarts_and_honours_overrides() {
    let mut d = Director::new("ck-link");
    let r1 = d.real("r1", "198.51.100.21");
    let r2 = d.real("r2", "198.51.100.22");
    let s1 = HttpServer::start(&r1.ns, sock("198.51.100.21:80"), None);
    let s2 = HttpServer::start(&r2.ns, sock("198.51.100.22:80"), None);
    s2.set(HttpMode::Error);
    let config = "virtual_services:\n  - name: web\n    address: 198.51.100.10\n    port: 80\n    forward: masq\n    \
                  check: {type: http, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}\n    reals:\n      \
                  - address: 198.51.100.21\n      - address: 198.51.100.22\n      \
                  - address: 198.51.100.23\n        check: {type: http, interval: 20s, timeout: 150ms, fall: 3}\n";
    d.start_ipvsd(config);
    d.start_checkd();
    d.wait_ipvsd("web", "198.51.100.22:80", ipb::Health::Down, Some(0));

    // ipvsd dies; meanwhile both reals change; probing goes on.
    let mut ipvsd = d.ipvsd.take().unwrap();
    ipvsd.signal(rustix::process::Signal::KILL);
    ipvsd.wait_exit(Duration::from_secs(5)).unwrap();
    s1.set(HttpMode::Error);
    s2.set(HttpMode::Ok);
    d.wait_target("198.51.100.21:80", ipb::Health::Down);
    d.wait_target("198.51.100.22:80", ipb::Health::Up);
    assert!(!d.targets().ipvsd_connected);
    std::fs::remove_file(d.path("ipvsd.sock")).ok();

    // A new ipvsd knows nothing; checkd re-reports what it found meanwhile.
    d.start_ipvsd(config);
    d.wait_ipvsd("web", "198.51.100.21:80", ipb::Health::Down, Some(0));
    d.wait_ipvsd("web", "198.51.100.22:80", ipb::Health::Up, Some(1));
    assert!(d.targets().ipvsd_connected);

    // The operator forces the failing real up, then clears that.
    let out = d.tandemctl(&["override", "198.51.100.21", "up"]);
    assert!(out.contains("198.51.100.21:80 forced up"), "{out}");
    d.wait_ipvsd("web", "198.51.100.21:80", ipb::Health::Up, Some(1));
    let t = d.wait_target("198.51.100.21:80", ipb::Health::Up);
    assert_eq!(
        t.probed_health(),
        ipb::Health::Down,
        "probing goes on under an override"
    );
    d.tandemctl(&["override", "198.51.100.21", "clear"]);
    d.wait_ipvsd("web", "198.51.100.21:80", ipb::Health::Down, Some(0));

    // A maintenance file takes the healthy real out, its removal brings it back.
    let maintenance = d.path("maintenance");
    std::fs::create_dir_all(&maintenance).unwrap();
    let file = maintenance.join("198.51.100.22:80");
    std::fs::write(&file, "").unwrap();
    let detail = d.wait_ipvsd("web", "198.51.100.22:80", ipb::Health::Down, Some(0));
    assert!(detail.contains("maintenance file"), "{detail}");
    std::fs::remove_file(&file).unwrap();
    d.wait_ipvsd("web", "198.51.100.22:80", ipb::Health::Up, Some(1));

    // A real whose probes have no verdict yet (fall 3 at 20 s): forced
    // down, then released, it goes back to unknown in ipvsd, at its weight.
    d.tandemctl(&["override", "198.51.100.23", "down"]);
    d.wait_ipvsd("web", "198.51.100.23:80", ipb::Health::Down, Some(0));
    d.tandemctl(&["override", "198.51.100.23", "clear"]);
    d.wait_ipvsd("web", "198.51.100.23:80", ipb::Health::Unspecified, Some(1));

    let unknown = Command::new(binary("tandemctl"))
        .args([
            "--socket",
            d.path("checkd.sock").to_str().unwrap(),
            "check",
            "override",
            "198.51.100.99",
            "down",
        ])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("NotFound"),
        "{unknown:?}"
    );
}

/// A TCP segment between the director and a real, from a capture in the
/// real's namespace.
#[derive(Debug)]
struct Segment {
    at: tokio::time::Instant,
    from_director: bool,
    /// The director's port: which connection.
    director_port: u16,
    real_port: u16,
    flags: u8,
    payload: usize,
}

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;
const ACK: u8 = 0x10;

/// The TCP segments to or from `director` in `frames`.
fn segments(frames: &[Frame], director: [u8; 4]) -> Vec<Segment> {
    frames
        .iter()
        .filter_map(|f| Some((f.at, f.tcp()?)))
        .filter_map(|(at, t)| {
            let from_director = t.src == director;
            if !from_director && t.dst != director {
                return None;
            }
            let (director_port, real_port) = if from_director {
                (t.src_port, t.dst_port)
            } else {
                (t.dst_port, t.src_port)
            };
            Some(Segment {
                at,
                from_director,
                director_port,
                real_port,
                flags: t.flags,
                payload: t.payload,
            })
        })
        .collect()
}

/// On the wire: an HTTP probe's handshake ends with its request (no bare
/// ACK goes first), a banner check's with an ACK at once (its server
/// speaks first); each ends with the director's reset, never a FIN
/// (`close: reset`, the default), the banner one having sent nothing.
#[test]
fn probes_send_the_handshake_ack_with_the_request_and_end_with_a_reset() {
    let mut d = Director::new("ck-wire");
    let real = d.real("r1", "198.51.100.51");
    let _web = HttpServer::start(&real.ns, sock("198.51.100.51:80"), None);
    banner_server(&real.ns, sock("198.51.100.51:25"), "220 ready\r\n");
    let capture = Capture::start(&real.ns).unwrap();
    let timing = "interval: 200ms, timeout: 150ms, rise: 1, fall: 1";
    d.start_ipvsd(&format!(
        "virtual_services:\n  - name: web\n    address: 198.51.100.10\n    port: 80\n    forward: masq\n    \
         check: {{type: http, {timing}}}\n    reals:\n      - address: 198.51.100.51\n  \
         - name: smtp\n    address: 198.51.100.10\n    port: 25\n    forward: masq\n    \
         check: {{type: tcp, receive: '220', {timing}}}\n    reals:\n      - address: 198.51.100.51\n"
    ));
    d.start_checkd();
    d.wait_target("198.51.100.51:80", ipb::Health::Up);
    d.wait_target("198.51.100.51:25", ipb::Health::Up);
    std::thread::sleep(Duration::from_millis(1000));
    let segments = segments(&capture.stop(), [198, 51, 100, 1]);
    let mut connections: std::collections::BTreeMap<(u16, u16), Vec<&Segment>> =
        std::collections::BTreeMap::new();
    for s in &segments {
        connections
            .entry((s.real_port, s.director_port))
            .or_default()
            .push(s);
    }
    // Whole connections only: from the SYN to the director's end of it.
    let whole: Vec<_> = connections
        .iter()
        .filter(|(_, c)| {
            c.first().is_some_and(|s| s.from_director && s.flags == SYN)
                && c.iter()
                    .any(|s| s.from_director && s.flags & (RST | FIN) != 0)
        })
        .collect();
    for port in [80, 25] {
        let n = whole.iter().filter(|((p, _), _)| *p == port).count();
        assert!(
            n >= 3,
            "{n} whole probe connections to port {port} captured"
        );
    }
    for ((port, _), connection) in whole {
        let ours: Vec<&&Segment> = connection.iter().filter(|s| s.from_director).collect();
        assert!(
            ours.iter().all(|s| s.flags & FIN == 0),
            "port {port}: the director sent a FIN: {connection:#?}"
        );
        let sent: usize = ours.iter().map(|s| s.payload).sum();
        let synack = connection
            .iter()
            .find(|s| !s.from_director && s.flags == SYN | ACK)
            .unwrap_or_else(|| panic!("port {port}: no SYN-ACK: {connection:#?}"));
        let second = ours
            .get(1)
            .unwrap_or_else(|| panic!("port {port}: nothing after the SYN: {connection:#?}"));
        match port {
            80 => assert!(
                second.flags & ACK != 0 && second.payload > 0,
                "port 80: the handshake's ACK went without the request: {connection:#?}"
            ),
            _ => {
                assert_eq!(sent, 0, "port 25: the director spoke: {connection:#?}");
                assert!(
                    second.flags == ACK && second.payload == 0,
                    "port 25: no bare ACK after the SYN-ACK: {connection:#?}"
                );
                let waited = second.at - synack.at;
                assert!(
                    waited < Duration::from_millis(100),
                    "port 25: the handshake's ACK waited {waited:?} (a delayed ACK, up to 200 ms): the banner server waits for it"
                );
            }
        }
    }
}
