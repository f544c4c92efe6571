//! `tandem.ipvs.v1` messages to and from the config types. Field names are
//! the YAML file's, so a [`FieldError`] reads the same for both; every
//! string that must be an address or a port is parsed here, naming the
//! field when it is not one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tandem_proto::ipvs::v1 as pb;

use crate::check::{CheckClose, CheckSpec, CheckType};
use crate::config::{
    FamilyName, ForwardName, Persistence, ProtocolName, RealServer, VirtualService,
};
use crate::effective::{Drain, Health};
use crate::field::FieldError;
use crate::ipvs::types::{Family, Protocol, ServiceKey};

/// `text` as an IP address, or an error naming `field`.
pub fn address(field: &str, text: &str) -> Result<IpAddr, FieldError> {
    text.parse()
        .map_err(|_| FieldError::new(field, format!("`{text}` is not an IP address")))
}

/// `value` as a port, or an error naming `field`.
pub fn port(field: &str, value: u32) -> Result<u16, FieldError> {
    u16::try_from(value)
        .map_err(|_| FieldError::new(field, format!("{value} is not a port (0-65535)")))
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn protocol(value: i32) -> Result<ProtocolName, FieldError> {
    match pb::Protocol::try_from(value) {
        Ok(pb::Protocol::Unspecified | pb::Protocol::Tcp) => Ok(ProtocolName::Tcp),
        Ok(pb::Protocol::Udp) => Ok(ProtocolName::Udp),
        Ok(pb::Protocol::Sctp) => Ok(ProtocolName::Sctp),
        Err(_) => Err(FieldError::new(
            "protocol",
            format!("{value} is not a protocol"),
        )),
    }
}

fn family(value: i32) -> Result<FamilyName, FieldError> {
    match pb::Family::try_from(value) {
        Ok(pb::Family::Unspecified | pb::Family::Ipv4) => Ok(FamilyName::Ipv4),
        Ok(pb::Family::Ipv6) => Ok(FamilyName::Ipv6),
        Err(_) => Err(FieldError::new(
            "family",
            format!("{value} is not a family"),
        )),
    }
}

fn forward(field: &str, value: i32) -> Result<Option<ForwardName>, FieldError> {
    match pb::Forward::try_from(value) {
        Ok(pb::Forward::Unspecified) => Ok(None),
        Ok(pb::Forward::Route) => Ok(Some(ForwardName::Route)),
        Ok(pb::Forward::Masq) => Ok(Some(ForwardName::Masq)),
        Ok(pb::Forward::Tunnel) => Ok(Some(ForwardName::Tunnel)),
        Err(_) => Err(FieldError::new(
            field,
            format!("{value} is not a forwarding method"),
        )),
    }
}

/// A service key from the wire; fields relative to the key.
pub fn service_key(key: &pb::ServiceKey) -> Result<ServiceKey, FieldError> {
    if key.fwmark > 0 {
        let family = match family(key.family)? {
            FamilyName::Ipv4 => Family::V4,
            FamilyName::Ipv6 => Family::V6,
        };
        return Ok(ServiceKey::Fwmark {
            family,
            mark: key.fwmark,
        });
    }
    if key.address.is_empty() {
        return Err(FieldError::new(
            "address",
            "give address and port, or fwmark",
        ));
    }
    Ok(ServiceKey::Addr {
        protocol: match protocol(key.protocol)? {
            ProtocolName::Tcp => Protocol::Tcp,
            ProtocolName::Udp => Protocol::Udp,
            ProtocolName::Sctp => Protocol::Sctp,
        },
        addr: address("address", &key.address)?,
        port: port("port", key.port)?,
    })
}

/// A required service key; `field` names it in the request.
pub fn required_key(field: &str, key: Option<&pb::ServiceKey>) -> Result<ServiceKey, FieldError> {
    let key = key.ok_or_else(|| FieldError::new(field, "required"))?;
    service_key(key).map_err(|e| e.within(field))
}

/// A service key for the wire.
pub fn service_key_to_wire(key: ServiceKey) -> pb::ServiceKey {
    match key {
        ServiceKey::Fwmark { family, mark } => pb::ServiceKey {
            fwmark: mark,
            family: family_to_wire(family).into(),
            ..pb::ServiceKey::default()
        },
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => pb::ServiceKey {
            protocol: match protocol {
                Protocol::Tcp => pb::Protocol::Tcp,
                Protocol::Udp => pb::Protocol::Udp,
                Protocol::Sctp => pb::Protocol::Sctp,
            }
            .into(),
            address: addr.to_string(),
            port: port.into(),
            ..pb::ServiceKey::default()
        },
    }
}

fn family_to_wire(family: Family) -> pb::Family {
    match family {
        Family::V4 => pb::Family::Ipv4,
        Family::V6 => pb::Family::Ipv6,
    }
}

/// A virtual service from the wire; fields relative to the service.
pub fn virtual_service(vs: &pb::VirtualService) -> Result<VirtualService, FieldError> {
    let address = match vs.address.as_str() {
        "" => None,
        text => Some(address("address", text)?),
    };
    let port = (address.is_some() || vs.port != 0)
        .then(|| port("port", vs.port))
        .transpose()?;
    let persistence = vs.persistence.as_ref().map(|p| Persistence {
        timeout: Duration::from_secs(p.timeout_s.into()),
        netmask: non_empty(&p.netmask),
    });
    let fallback =
        match vs.fallback.as_str() {
            "" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                FieldError::new("fallback", format!("`{text}` is not ADDRESS:PORT"))
            })?),
        };
    let reals = vs
        .reals
        .iter()
        .enumerate()
        .map(|(j, r)| real_server(r).map_err(|e| e.within(&format!("reals[{j}]"))))
        .collect::<Result<_, _>>()?;
    Ok(VirtualService {
        name: non_empty(&vs.name),
        protocol: protocol(vs.protocol)?,
        address,
        port,
        fwmark: (vs.fwmark > 0).then_some(vs.fwmark),
        family: family(vs.family)?,
        scheduler: non_empty(&vs.scheduler).unwrap_or_else(|| "wlc".into()),
        scheduler_flags: vs.scheduler_flags.clone(),
        persistence,
        one_packet: vs.one_packet,
        forward: forward("forward", vs.forward)?.unwrap_or_default(),
        quiescent: vs.quiescent.unwrap_or(true),
        fallback,
        reals,
        check: vs
            .check
            .as_ref()
            .map(|c| check_spec(c).map(Box::new).map_err(|e| e.within("check")))
            .transpose()?,
    })
}

/// A real server from the wire; fields relative to the real.
pub fn real_server(r: &pb::RealServer) -> Result<RealServer, FieldError> {
    Ok(RealServer {
        address: address("address", &r.address)?,
        port: r.port.map(|p| port("port", p)).transpose()?,
        weight: r.weight.map_or(1, |w| i32::try_from(w).unwrap_or(i32::MAX)),
        forward: forward("forward", r.forward)?,
        upper_threshold: r.upper_threshold,
        lower_threshold: r.lower_threshold,
        check: r
            .check
            .as_ref()
            .map(|c| check_spec(c).map(Box::new).map_err(|e| e.within("check")))
            .transpose()?,
    })
}

/// A virtual service for the wire.
pub fn virtual_service_to_wire(vs: &VirtualService) -> pb::VirtualService {
    pb::VirtualService {
        name: vs.name.clone().unwrap_or_default(),
        protocol: match vs.protocol {
            ProtocolName::Tcp => pb::Protocol::Tcp,
            ProtocolName::Udp => pb::Protocol::Udp,
            ProtocolName::Sctp => pb::Protocol::Sctp,
        }
        .into(),
        address: vs.address.map(|a| a.to_string()).unwrap_or_default(),
        port: vs.port.unwrap_or(0).into(),
        fwmark: vs.fwmark.unwrap_or(0),
        family: match vs.family {
            FamilyName::Ipv4 => pb::Family::Ipv4,
            FamilyName::Ipv6 => pb::Family::Ipv6,
        }
        .into(),
        scheduler: vs.scheduler.clone(),
        scheduler_flags: vs.scheduler_flags.clone(),
        persistence: vs.persistence.as_ref().map(|p| pb::Persistence {
            timeout_s: u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX),
            netmask: p.netmask.clone().unwrap_or_default(),
        }),
        one_packet: vs.one_packet,
        forward: forward_to_wire(Some(vs.forward)).into(),
        quiescent: Some(vs.quiescent),
        fallback: vs.fallback.map(|f| f.to_string()).unwrap_or_default(),
        reals: vs.reals.iter().map(real_server_to_wire).collect(),
        check: vs.check.as_deref().map(check_spec_to_wire),
    }
}

fn forward_to_wire(forward: Option<ForwardName>) -> pb::Forward {
    match forward {
        None => pb::Forward::Unspecified,
        Some(ForwardName::Route) => pb::Forward::Route,
        Some(ForwardName::Masq) => pb::Forward::Masq,
        Some(ForwardName::Tunnel) => pb::Forward::Tunnel,
    }
}

/// A real server for the wire.
pub fn real_server_to_wire(r: &RealServer) -> pb::RealServer {
    pb::RealServer {
        address: r.address.to_string(),
        port: r.port.map(u32::from),
        weight: Some(u32::try_from(r.weight).unwrap_or(0)),
        forward: forward_to_wire(r.forward).into(),
        upper_threshold: r.upper_threshold,
        lower_threshold: r.lower_threshold,
        check: r.check.as_deref().map(check_spec_to_wire),
    }
}

fn millis(ms: Option<u32>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(ms.into()))
}

fn to_millis(d: Option<Duration>) -> Option<u32> {
    d.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
}

/// A check spec from the wire; fields relative to the spec.
pub fn check_spec(c: &pb::CheckSpec) -> Result<CheckSpec, FieldError> {
    let kind = match pb::CheckType::try_from(c.r#type) {
        Ok(pb::CheckType::Unspecified | pb::CheckType::Tcp) => CheckType::Tcp,
        Ok(pb::CheckType::Http) => CheckType::Http,
        Ok(pb::CheckType::Https) => CheckType::Https,
        Ok(pb::CheckType::Udp) => CheckType::Udp,
        Ok(pb::CheckType::Dns) => CheckType::Dns,
        Ok(pb::CheckType::Icmp) => CheckType::Icmp,
        Ok(pb::CheckType::External) => CheckType::External,
        Ok(pb::CheckType::Off) => CheckType::Off,
        Ok(pb::CheckType::On) => CheckType::On,
        Err(_) => {
            return Err(FieldError::new(
                "type",
                format!("{} is not a check type", c.r#type),
            ));
        }
    };
    let close = match pb::CheckClose::try_from(c.close) {
        Ok(pb::CheckClose::Unspecified) => None,
        Ok(pb::CheckClose::Reset) => Some(CheckClose::Reset),
        Ok(pb::CheckClose::Fin) => Some(CheckClose::Fin),
        Err(_) => {
            return Err(FieldError::new(
                "close",
                format!("{} is not a way to close", c.close),
            ));
        }
    };
    Ok(CheckSpec {
        kind,
        close,
        interval: millis(c.interval_ms),
        timeout: millis(c.timeout_ms),
        rise: c.rise,
        fall: c.fall,
        port: c.port.map(|p| port("port", p)).transpose()?,
        source: match c.source.as_str() {
            "" => None,
            text => Some(address("source", text)?),
        },
        through_vip: c.through_vip,
        send: non_empty(&c.send),
        receive: non_empty(&c.receive),
        receive_regex: c.receive_regex,
        method: non_empty(&c.method),
        request: non_empty(&c.request),
        virtualhost: non_empty(&c.virtualhost),
        headers: c.headers.clone().into_iter().collect(),
        status_codes: c
            .status_codes
            .iter()
            .map(|&s| u16::try_from(s).unwrap_or(u16::MAX))
            .collect(),
        verify_tls: c.verify_tls,
        max_body_bytes: c.max_body_bytes,
        query_name: non_empty(&c.query_name),
        query_type: non_empty(&c.query_type),
        command: c.command.clone(),
    })
}

/// A check spec for the wire.
pub fn check_spec_to_wire(c: &CheckSpec) -> pb::CheckSpec {
    pb::CheckSpec {
        r#type: match c.kind {
            CheckType::Tcp => pb::CheckType::Tcp,
            CheckType::Http => pb::CheckType::Http,
            CheckType::Https => pb::CheckType::Https,
            CheckType::Udp => pb::CheckType::Udp,
            CheckType::Dns => pb::CheckType::Dns,
            CheckType::Icmp => pb::CheckType::Icmp,
            CheckType::External => pb::CheckType::External,
            CheckType::Off => pb::CheckType::Off,
            CheckType::On => pb::CheckType::On,
        }
        .into(),
        interval_ms: to_millis(c.interval),
        timeout_ms: to_millis(c.timeout),
        rise: c.rise,
        fall: c.fall,
        port: c.port.map(u32::from),
        source: c.source.map(|s| s.to_string()).unwrap_or_default(),
        through_vip: c.through_vip,
        close: match c.close {
            None => pb::CheckClose::Unspecified,
            Some(CheckClose::Reset) => pb::CheckClose::Reset,
            Some(CheckClose::Fin) => pb::CheckClose::Fin,
        }
        .into(),
        send: c.send.clone().unwrap_or_default(),
        receive: c.receive.clone().unwrap_or_default(),
        receive_regex: c.receive_regex,
        method: c.method.clone().unwrap_or_default(),
        request: c.request.clone().unwrap_or_default(),
        virtualhost: c.virtualhost.clone().unwrap_or_default(),
        headers: c.headers.clone().into_iter().collect(),
        status_codes: c.status_codes.iter().map(|&s| u32::from(s)).collect(),
        verify_tls: c.verify_tls,
        max_body_bytes: c.max_body_bytes,
        query_name: c.query_name.clone().unwrap_or_default(),
        query_type: c.query_type.clone().unwrap_or_default(),
        command: c.command.clone(),
    }
}

/// A health for the wire.
pub fn health_to_wire(health: Health) -> pb::Health {
    match health {
        Health::Unknown => pb::Health::Unspecified,
        Health::Up => pb::Health::Up,
        Health::Down => pb::Health::Down,
    }
}

/// A reported health: UP, DOWN, or UNSPECIFIED (not known again, as when
/// an operator's override is lifted before the probes reached a verdict).
pub fn reported_health(field: &str, value: i32) -> Result<Health, FieldError> {
    match pb::Health::try_from(value) {
        Ok(pb::Health::Unspecified) => Ok(Health::Unknown),
        Ok(pb::Health::Up) => Ok(Health::Up),
        Ok(pb::Health::Down) => Ok(Health::Down),
        Err(_) => Err(FieldError::new(
            field,
            format!("{value} is not UNSPECIFIED, UP or DOWN"),
        )),
    }
}

/// A drain state for the wire.
pub fn drain_to_wire(drain: Drain) -> pb::DrainState {
    match drain {
        Drain::None => pb::DrainState::Unspecified,
        Drain::Draining { .. } => pb::DrainState::Draining,
        Drain::Drained { .. } => pb::DrainState::Drained,
    }
}

/// A real selector from the wire; `field` names it in the request.
pub fn selector(
    field: &str,
    s: Option<&pb::RealSelector>,
) -> Result<crate::model::Selector, FieldError> {
    let s = s.ok_or_else(|| FieldError::new(field, "required"))?;
    let within = |e: FieldError| e.within(field);
    Ok(crate::model::Selector {
        address: address("address", &s.address).map_err(within)?,
        port: s
            .port
            .map(|p| port("port", p))
            .transpose()
            .map_err(within)?,
        service: s
            .service
            .as_ref()
            .map(|k| service_key(k).map_err(|e| e.within(&format!("{field}.service"))))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests;
