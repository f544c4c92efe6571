//! Targets: one per real server of ipvsd's table, with the check spec in
//! force (the real's own, else its service's, else a TCP connect) turned
//! into a ready-to-run [`Plan`] with its defaults filled in.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tandem_ipvsd::check::{
    CheckSpec, CheckType, DEFAULT_INTERVAL, DEFAULT_RISE_FALL, DEFAULT_TIMEOUT,
};
use tandem_ipvsd::config::{RealServer, VirtualService};
use tandem_ipvsd::effective::{Health, RealId};
use tandem_ipvsd::ipvs::types::ServiceKey;

use crate::expect::Expect;

/// Default cap on the body an HTTP check reads.
pub const DEFAULT_MAX_BODY: usize = 65_536;

/// What identifies a target: the real as ipvsd names it in `ReportHealth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// The virtual service.
    pub service: ServiceKey,
    /// The real's address.
    pub address: IpAddr,
    /// The real's effective port.
    pub port: u16,
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.service,
            SocketAddr::new(self.address, self.port)
        )
    }
}

/// How often, how patient, and how many results make a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Time between probe starts.
    pub interval: Duration,
    /// A probe taking longer fails.
    pub timeout: Duration,
    /// Successes in a row to come up.
    pub rise: u32,
    /// Failures in a row to go down.
    pub fall: u32,
}

/// An HTTP or HTTPS request and what its response must be.
#[derive(Clone, Debug)]
pub struct HttpPlan {
    /// Request method.
    pub method: http::Method,
    /// Path and query.
    pub uri: http::Uri,
    /// `Host` header, and the TLS server name.
    pub host: String,
    /// `host` as a header value, checked once.
    pub host_header: http::HeaderValue,
    /// Extra headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Accepted status codes.
    pub status_codes: Vec<u16>,
    /// What the body must contain.
    pub expect: Option<Expect>,
    /// Body bytes read at most.
    pub max_body: usize,
    /// TLS, for `https`: whether to verify the certificate.
    pub tls: Option<bool>,
    /// The TLS server name (SNI and verification), from `host`.
    pub server_name: ServerName<'static>,
}

/// A ready-to-run probe.
#[derive(Clone, Debug)]
pub enum Plan {
    /// TCP connect; then send and expect, if given.
    Tcp {
        /// Bytes to send after connecting.
        send: Option<Vec<u8>>,
        /// What the reply must contain.
        expect: Option<Expect>,
    },
    /// An HTTP(S) request.
    Http(Box<HttpPlan>),
    /// A UDP datagram and its reply.
    Udp {
        /// The datagram.
        send: Vec<u8>,
        /// What the reply must contain (any reply when none).
        expect: Option<Expect>,
    },
    /// A DNS query over UDP.
    Dns {
        /// The name asked for.
        name: hickory_proto::rr::Name,
        /// The record type.
        record_type: hickory_proto::rr::RecordType,
        /// What an answer must contain (any answer of the type when none).
        expect: Option<Expect>,
    },
    /// ICMP echo.
    Icmp,
    /// A command; exit 0 = up.
    External {
        /// Program and arguments.
        command: Vec<String>,
    },
    /// No probing: the verdict is fixed (`on`/`off`).
    Forced(Health),
    /// Cannot be probed as configured; the reason is shown, the verdict
    /// stays unknown (which ipvsd treats as up).
    Unprobeable(String),
}

/// One real server to probe.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its identity.
    pub key: TargetKey,
    /// The virtual service's display name.
    pub service_name: String,
    /// The virtual address and port (none for a firewall-mark service).
    pub virtual_addr: Option<SocketAddr>,
    /// Where probes go: the real's address and the check's port, or for a
    /// `through_vip` check the VIP's address and the check's port.
    pub addr: SocketAddr,
    /// Source address of probes.
    pub source: Option<IpAddr>,
    /// The firewall mark of the real's probe service, set on the probe's
    /// socket so the kernel forwards it to this real (`through_vip`).
    pub mark: Option<u32>,
    /// The spec as written (for the API).
    pub spec: CheckSpec,
    /// Interval, timeout, rise, fall.
    pub timing: Timing,
    /// The probe.
    pub plan: Plan,
}

impl Target {
    /// Builds the target for `real` of `service`; `marks` are the probe
    /// marks ipvsd published.
    pub fn new(
        service: &VirtualService,
        real: &RealServer,
        marks: &BTreeMap<RealId, u32>,
    ) -> Option<Self> {
        let service_key = service.key()?;
        let port = service.real_port(real);
        let key = TargetKey {
            service: service_key,
            address: real.address,
            port,
        };
        let spec = service.check_of(real).cloned().unwrap_or_default();
        let probe_port = spec.port.unwrap_or(port);
        let virtual_addr = match service_key {
            ServiceKey::Addr { addr, port, .. } => Some(SocketAddr::new(addr, port)),
            ServiceKey::Fwmark { .. } => None,
        };
        let timing = Timing {
            interval: spec.interval.unwrap_or(DEFAULT_INTERVAL),
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
            rise: spec.rise.unwrap_or(DEFAULT_RISE_FALL),
            fall: spec.fall.unwrap_or(DEFAULT_RISE_FALL),
        };
        let mark = marks.get(&(service_key, real.address, port)).copied();
        let (address, plan) = match (spec.through_vip, mark, virtual_addr) {
            (false, ..) => (real.address, plan_of(&spec, real.address, probe_port)),
            (true, Some(_), Some(vip)) => (vip.ip(), plan_of(&spec, vip.ip(), probe_port)),
            (true, ..) => (
                real.address,
                Plan::Unprobeable(
                    "not probed: through_vip needs ipvsd's probe service, in the kernel only while STANDBY or ACTIVE".into(),
                ),
            ),
        };
        Some(Self {
            key,
            service_name: service.display_name(),
            virtual_addr,
            addr: SocketAddr::new(address, probe_port),
            source: spec.source,
            mark: mark.filter(|_| spec.through_vip),
            spec,
            timing,
            plan,
        })
    }

    /// Where in its interval this target's probes start, counted from when
    /// its probing starts (checkd's start, or the target's arrival in
    /// ipvsd's table): spread evenly by a hash of its key, so 10,000
    /// targets are not probed in one burst.
    pub fn phase(&self) -> Duration {
        let nanos = u64::try_from(self.timing.interval.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.key_hash(()) % nanos.max(1))
    }

    /// A share in [0, 1) from a second hash of the key, unrelated to
    /// [`Target::phase`]: how much of a stall's delay this target's probe
    /// waits once the stall is over (targets a stall held up have
    /// neighbouring phases, so their phases would not spread them).
    pub fn stall_share(&self) -> f64 {
        // The top 53 bits: exactly an f64 in [0, 1).
        #[allow(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
        let share = (self.key_hash("stall") >> 11) as f64 / (1u64 << 53) as f64;
        share
    }

    /// A hash of the key and `salt` (`()` adds nothing to the key's).
    fn key_hash(&self, salt: impl Hash) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.key.hash(&mut hasher);
        salt.hash(&mut hasher);
        hasher.finish()
    }

    /// The check type's name, for metrics.
    pub fn kind(&self) -> &'static str {
        self.spec.kind.name()
    }
}

/// Every target of a table, in table order, with the probe marks ipvsd
/// published.
pub fn targets_of(services: &[VirtualService], marks: &BTreeMap<RealId, u32>) -> Vec<Target> {
    services
        .iter()
        .flat_map(|vs| vs.reals.iter().filter_map(|r| Target::new(vs, r, marks)))
        .collect()
}

/// The probe of `spec` against `address` (the real's, or the VIP for a
/// `through_vip` check: the default `Host` and TLS name follow it).
fn plan_of(spec: &CheckSpec, address: IpAddr, port: u16) -> Plan {
    let expect = match spec
        .receive
        .as_deref()
        .map(|r| Expect::new(r, spec.receive_regex))
    {
        None => None,
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => return Plan::Unprobeable(format!("receive: {e}")),
    };
    let needs_port = matches!(
        spec.kind,
        CheckType::Tcp | CheckType::Http | CheckType::Https | CheckType::Udp | CheckType::Dns
    );
    if needs_port && port == 0 {
        return Plan::Unprobeable(
            "not probed: the real has no port (firewall-mark service): set check.port".into(),
        );
    }
    match spec.kind {
        CheckType::Tcp => Plan::Tcp {
            send: spec.send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect,
        },
        CheckType::Http | CheckType::Https => match http_plan(spec, address, expect) {
            Ok(plan) => Plan::Http(Box::new(plan)),
            Err(reason) => Plan::Unprobeable(reason),
        },
        CheckType::Udp => Plan::Udp {
            send: spec.send.clone().unwrap_or_default().into_bytes(),
            expect,
        },
        CheckType::Dns => match dns_query(spec) {
            Ok((name, record_type)) => Plan::Dns {
                name,
                record_type,
                expect,
            },
            Err(reason) => Plan::Unprobeable(reason),
        },
        CheckType::Icmp => Plan::Icmp,
        CheckType::External => Plan::External {
            command: spec.command.clone(),
        },
        CheckType::Off => Plan::Forced(Health::Down),
        CheckType::On => Plan::Forced(Health::Up),
    }
}

/// The DNS query of a `dns` check, parsed once.
fn dns_query(
    spec: &CheckSpec,
) -> Result<(hickory_proto::rr::Name, hickory_proto::rr::RecordType), String> {
    let name = spec.query_name.as_deref().unwrap_or_default();
    let name = hickory_proto::rr::Name::from_ascii(name).map_err(|e| format!("query_name: {e}"))?;
    let record_type = spec.query_type.as_deref().unwrap_or("A");
    let record_type = record_type
        .parse()
        .map_err(|e| format!("query_type: {e}"))?;
    Ok((name, record_type))
}

/// SNI and the name a certificate is verified against: the `Host` without
/// a port if it is a DNS name, else the address (no SNI is sent for one).
fn tls_server_name(host: &str, address: IpAddr) -> ServerName<'static> {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok() && !host.ends_with(']'))
        .map_or(host, |(name, _)| name);
    ServerName::try_from(name.to_owned()).unwrap_or_else(|_| ServerName::from(address))
}

fn http_plan(
    spec: &CheckSpec,
    address: IpAddr,
    expect: Option<Expect>,
) -> Result<HttpPlan, String> {
    let method = spec.method.as_deref().unwrap_or("GET");
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("method: `{method}` is not an HTTP method"))?;
    let path = spec.request.as_deref().unwrap_or("/");
    let uri =
        http::Uri::try_from(path).map_err(|e| format!("request: `{path}` is not a path: {e}"))?;
    let host = spec.virtualhost.clone().unwrap_or_else(|| match address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    });
    let host_header = http::HeaderValue::from_str(&host)
        .map_err(|_| format!("virtualhost: `{host}` is not a header value"))?;
    let headers = spec
        .headers
        .iter()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: `{k}` is not a header name"))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| format!("headers.{k}: not a header value"))?;
            Ok((name, value))
        })
        .collect::<Result<_, String>>()?;
    Ok(HttpPlan {
        server_name: tls_server_name(&host, address),
        method,
        uri,
        host,
        host_header,
        headers,
        status_codes: if spec.status_codes.is_empty() {
            vec![200]
        } else {
            spec.status_codes.clone()
        },
        expect,
        max_body: spec.max_body_bytes.map_or(DEFAULT_MAX_BODY, |b| {
            usize::try_from(b).unwrap_or(usize::MAX)
        }),
        tls: (spec.kind == CheckType::Https).then_some(spec.verify_tls),
    })
}

#[cfg(test)]
mod tests;
