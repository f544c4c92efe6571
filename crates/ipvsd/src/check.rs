//! The check spec stored on a virtual service (or a real, overriding it):
//! how checkd probes the reals. ipvsd only stores, validates and hands it
//! to checkd through `Watch`; it never probes. Absent fields mean checkd's
//! defaults ([`DEFAULT_INTERVAL`] …), so what an operator wrote is what
//! checkd receives. Validation resolves the defaults to check the rules
//! that span fields (timeout shorter than interval).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::field::FieldError;

/// Time between probe starts when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Probe timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(800);
/// Successes to come up, failures to go down, when none is given.
pub const DEFAULT_RISE_FALL: u32 = 2;
/// Shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// DNS record types a `dns` check may ask for.
pub const DNS_TYPES: &[&str] = &["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"];

/// The kind of probe.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// TCP connect, optionally send/expect.
    #[default]
    Tcp,
    /// HTTP request.
    Http,
    /// HTTPS request.
    Https,
    /// UDP send/expect.
    Udp,
    /// DNS query over UDP.
    Dns,
    /// ICMP echo.
    Icmp,
    /// A command, exit 0 = healthy.
    External,
    /// Forced down.
    Off,
    /// Forced up.
    On,
}

/// How a TCP probe's connection ends (`close:`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckClose {
    /// A reset, as HAProxy's checks end: no TIME_WAIT on the director and
    /// none on the real, and the kernel's cost of a FIN exchange is saved.
    #[default]
    Reset,
    /// A FIN, for a server that logs every reset as an error.
    Fin,
}

impl CheckType {
    /// Its name in the config (`tcp`, `http` …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Https => "https",
            Self::Udp => "udp",
            Self::Dns => "dns",
            Self::Icmp => "icmp",
            Self::External => "external",
            Self::Off => "off",
            Self::On => "on",
        }
    }
}

/// How to probe a real server (the `check:` block).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// The kind of probe (default `tcp`).
    #[serde(default, rename = "type")]
    pub kind: CheckType,
    /// Time between probe starts (default 1s).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Probe timeout, shorter than the interval (default 800ms).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Successes that bring a down real up (default 2).
    pub rise: Option<u32>,
    /// Failures that take an up real down (default 2).
    pub fall: Option<u32>,
    /// Port to probe (default the real's).
    pub port: Option<u16>,
    /// Source address of probes.
    pub source: Option<IpAddr>,
    /// Probe through the VIP, as client traffic reaches the real.
    #[serde(default)]
    pub through_vip: bool,
    /// tcp/http/https: how a probe's connection ends (default reset).
    pub close: Option<CheckClose>,
    /// tcp/udp: bytes to send.
    pub send: Option<String>,
    /// tcp/udp/http/https: what the reply must contain; dns: an answer.
    pub receive: Option<String>,
    /// `receive` is a regular expression.
    #[serde(default)]
    pub receive_regex: bool,
    /// http/https: method (default GET).
    pub method: Option<String>,
    /// http/https: path and query (default `/`).
    pub request: Option<String>,
    /// http/https: Host header and SNI.
    pub virtualhost: Option<String>,
    /// http/https: extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// http/https: accepted status codes (default 200).
    #[serde(default)]
    pub status_codes: Vec<u16>,
    /// https: verify the certificate.
    #[serde(default)]
    pub verify_tls: bool,
    /// http/https: body bytes read at most (default 65536).
    pub max_body_bytes: Option<u32>,
    /// dns: name to query.
    pub query_name: Option<String>,
    /// dns: record type (default A).
    pub query_type: Option<String>,
    /// external: command and arguments.
    #[serde(default)]
    pub command: Vec<String>,
}

impl CheckSpec {
    /// Checks the rules serde cannot; field names are relative to the
    /// `check` block.
    pub fn validate(&self) -> Result<(), FieldError> {
        let interval = self.interval.unwrap_or(DEFAULT_INTERVAL);
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if interval < MIN_INTERVAL {
            return Err(FieldError::new("interval", "must be at least 10ms"));
        }
        if timeout.is_zero() {
            return Err(FieldError::new("timeout", "must be greater than 0"));
        }
        if timeout >= interval {
            return Err(FieldError::new(
                "timeout",
                format!(
                    "{} is not shorter than the interval ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        for (field, value) in [("rise", self.rise), ("fall", self.fall)] {
            if value == Some(0) {
                return Err(FieldError::new(field, "must be at least 1"));
            }
        }
        if self.port == Some(0) {
            return Err(FieldError::new("port", "must be 1-65535"));
        }
        self.validate_fields_of_type()?;
        if self.through_vip && self.close == Some(CheckClose::Fin) {
            return Err(FieldError::new(
                "close",
                "a through_vip probe must end with a reset: after a FIN, IPVS would take a later probe from the same port to this probe's real",
            ));
        }
        if self.receive_regex {
            let pattern = self.receive.as_deref().unwrap_or_default();
            regex::Regex::new(pattern).map_err(|e| {
                FieldError::new("receive", format!("not a regular expression: {e}"))
            })?;
        }
        if let Some(method) = &self.method
            && !is_token(method)
        {
            return Err(FieldError::new(
                "method",
                format!("`{method}` is not an HTTP method"),
            ));
        }
        if let Some(path) = &self.request
            && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(FieldError::new(
                "request",
                format!(
                    "`{path}` is not a path: it must start with / and hold no spaces (ldirectord's request=\"test.html\" is /test.html)"
                ),
            ));
        }
        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err(FieldError::new(
                    "headers",
                    format!("`{name}` is not a header name"),
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(FieldError::new(
                    format!("headers.{name}"),
                    "control characters are not allowed in a header value",
                ));
            }
        }
        if let Some(code) = self.status_codes.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(FieldError::new(
                "status_codes",
                format!("{code} is not an HTTP status code"),
            ));
        }
        if let Some(t) = &self.query_type
            && !DNS_TYPES.contains(&t.as_str())
        {
            return Err(FieldError::new(
                "query_type",
                format!("`{t}` is not one of {}", DNS_TYPES.join(" ")),
            ));
        }
        Ok(())
    }

    /// Each field set must belong to this type; each type's required fields
    /// must be set.
    fn validate_fields_of_type(&self) -> Result<(), FieldError> {
        use CheckType::{Dns, External, Http, Https, Tcp, Udp};
        let kind = self.kind;
        let http = matches!(kind, Http | Https);
        let set = [
            ("send", self.send.is_some(), matches!(kind, Tcp | Udp)),
            (
                "close",
                self.close.is_some(),
                matches!(kind, Tcp | Http | Https),
            ),
            (
                "receive",
                self.receive.is_some() || self.receive_regex,
                matches!(kind, Tcp | Udp | Http | Https | Dns),
            ),
            ("method", self.method.is_some(), http),
            ("request", self.request.is_some(), http),
            ("virtualhost", self.virtualhost.is_some(), http),
            ("headers", !self.headers.is_empty(), http),
            ("status_codes", !self.status_codes.is_empty(), http),
            ("verify_tls", self.verify_tls, kind == Https),
            ("max_body_bytes", self.max_body_bytes.is_some(), http),
            ("query_name", self.query_name.is_some(), kind == Dns),
            ("query_type", self.query_type.is_some(), kind == Dns),
            ("command", !self.command.is_empty(), kind == External),
        ];
        if let Some((field, ..)) = set.iter().find(|(_, is_set, allowed)| *is_set && !allowed) {
            return Err(FieldError::new(
                *field,
                format!("does not apply to a {} check", kind.name()),
            ));
        }
        let required = match kind {
            Udp => Some(("send", self.send.is_some())),
            Dns => Some(("query_name", self.query_name.is_some())),
            External => Some(("command", !self.command.is_empty())),
            _ => None,
        };
        if let Some((field, false)) = required {
            return Err(FieldError::new(
                field,
                format!("required for a {} check", kind.name()),
            ));
        }
        Ok(())
    }
}

/// An HTTP token (RFC 9110 5.6.2): a method or a header name.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
