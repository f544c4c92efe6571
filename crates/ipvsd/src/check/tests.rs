//! Check specs: what an operator writes parses; what cannot work is refused
//! naming the field.

use super::*;

fn spec(yaml: &str) -> CheckSpec {
    tandem_daemon::config::parse(std::path::Path::new("c.yaml"), yaml).unwrap()
}

fn refused(yaml: &str) -> String {
    spec(yaml).validate().unwrap_err().to_string()
}

#[test]
fn an_ldirectord_style_http_check_parses_and_is_valid() {
    let c = spec(
        "
type: http
interval: 2s
timeout: 1s
rise: 3
fall: 2
request: /index.html
virtualhost: www.example.com
receive: Test Page
status_codes: [200, 301]
headers: {X-Check: tandem}
",
    );
    c.validate().unwrap();
    assert_eq!(c.kind, CheckType::Http);
    assert_eq!(c.interval, Some(Duration::from_secs(2)));
    assert_eq!(c.status_codes, vec![200, 301]);
    assert_eq!(c.headers.get("X-Check").map(String::as_str), Some("tandem"));
}

#[test]
fn the_defaults_are_valid_and_detect_a_dead_real_within_three_seconds() {
    CheckSpec::default().validate().unwrap();
    let worst = DEFAULT_INTERVAL * DEFAULT_RISE_FALL + DEFAULT_TIMEOUT;
    assert!(worst <= Duration::from_secs(3), "{worst:?}");
}

#[test]
fn timings_that_cannot_work_name_the_field() {
    assert_eq!(
        refused("{timeout: 2s, interval: 1s}"),
        "timeout: 2s is not shorter than the interval (1s)"
    );
    assert!(
        refused("{timeout: 1s}").starts_with("timeout:"),
        "default interval is 1s"
    );
    assert!(refused("{interval: 1ms}").starts_with("interval:"));
    assert!(refused("{rise: 0}").starts_with("rise:"));
    assert!(refused("{fall: 0}").starts_with("fall:"));
    assert!(refused("{port: 0}").starts_with("port:"));
}

#[test]
fn a_bad_regex_is_refused() {
    let err = refused("{type: http, receive: 'ok(', receive_regex: true}");
    assert!(
        err.starts_with("receive: not a regular expression"),
        "{err}"
    );
    spec("{type: http, receive: 'o+k', receive_regex: true}")
        .validate()
        .unwrap();
}

#[test]
fn fields_of_another_type_and_missing_required_fields_are_refused() {
    assert_eq!(
        refused("{type: tcp, request: /}"),
        "request: does not apply to a tcp check"
    );
    assert_eq!(
        refused("{type: http, verify_tls: true}"),
        "verify_tls: does not apply to a http check"
    );
    assert_eq!(refused("{type: udp}"), "send: required for a udp check");
    assert_eq!(
        refused("{type: dns}"),
        "query_name: required for a dns check"
    );
    assert_eq!(
        refused("{type: external}"),
        "command: required for a external check"
    );
    assert!(
        refused("{type: dns, query_name: a.example, query_type: BOGUS}").starts_with("query_type:")
    );
    assert!(refused("{type: http, status_codes: [99]}").starts_with("status_codes:"));
}

#[test]
fn an_unknown_type_is_a_parse_error_naming_it() {
    let err =
        tandem_daemon::config::parse::<CheckSpec>(std::path::Path::new("c.yaml"), "type: smtp\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("type") && err.contains("smtp"), "{err}");
}

#[test]
fn http_methods_and_headers_must_be_well_formed() {
    assert!(refused("{type: http, method: 'GET /'}").starts_with("method: `GET /` is not"));
    assert!(refused("{type: http, headers: {'X Bad': v}}").starts_with("headers: `X Bad`"));
    assert!(refused("{type: http, headers: {X-Ok: \"a\\nb\"}}").starts_with("headers.X-Ok:"));
    assert!(
        refused("{type: http, request: index.html}")
            .starts_with("request: `index.html` is not a path: it must start with /")
    );
    assert!(refused("{type: http, request: '/a b'}").starts_with("request:"));
    spec("{type: http, request: '/health?deep=1'}")
        .validate()
        .unwrap();
    spec("{type: https, method: HEAD, headers: {X-Probe: tandem}}")
        .validate()
        .unwrap();
    spec("{type: dns, query_name: www.example.test, receive: 198.51.100.10}")
        .validate()
        .unwrap();
}

#[test]
fn close_applies_to_tcp_probes_and_a_through_vip_probe_must_reset() {
    assert_eq!(
        spec("{type: http, close: fin}").close,
        Some(CheckClose::Fin)
    );
    spec("{type: tcp, close: reset}").validate().unwrap();
    assert_eq!(
        refused("{type: udp, send: x, close: fin}"),
        "close: does not apply to a udp check"
    );
    assert!(
        refused("{type: http, through_vip: true, close: fin}")
            .starts_with("close: a through_vip probe must end with a reset")
    );
    spec("{type: http, through_vip: true, close: reset}")
        .validate()
        .unwrap();
    let err = tandem_daemon::config::parse::<CheckSpec>(
        std::path::Path::new("c.yaml"),
        "close: linger\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("close") && err.contains("linger"), "{err}");
}
