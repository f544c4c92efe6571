//! The `ipvsadm-save -n` / `ipvsadm -R` rule format: export a table as text
//! byte-identical to what `ipvsadm-save -n` prints for the same kernel
//! table, and import such text (the seed's `/etc/sysconfig/ipvsadm` loads as
//! it is). Export follows ipvsadm 1.31's ordering and spelling, checked
//! against it in the VM tier. Like `ipvsadm-save`, export leaves out
//! connection thresholds (`-x`/`-y`), though import accepts them: the
//! format cannot carry them back, so it is not ipvsd's lossless store.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::ipvs::abi::svc_flag;
use crate::ipvs::types::{Dest, Family, Forward, Protocol, Service, ServiceKey, Tunnel};
use crate::spelling;
use crate::table::{ServiceSpec, Table};

/// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM` / `_REMCSUM`.
const TUN_CSUM: u16 = 1;
const TUN_REMCSUM: u16 = 2;
/// ipvsadm's default persistence timeout, in seconds.
const DEFAULT_PERSISTENCE: u32 = 360;

/// A rule line that cannot be imported; names the line and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct RulesError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// ipvsadm's address order: a 32-bit wrapping difference read as signed
/// (so 10.0.0.1 sorts after 198.51.100.1, as `ipvsadm-save` prints).
fn cmp_addr(a: &IpAddr, b: &IpAddr) -> Ordering {
    let words = |ip: &IpAddr| -> Vec<u32> {
        match ip {
            IpAddr::V4(v4) => vec![u32::from(*v4)],
            IpAddr::V6(v6) => v6
                .octets()
                .chunks(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    };
    for (x, y) in words(a).into_iter().zip(words(b)) {
        let r = i32::from_ne_bytes(x.wrapping_sub(y).to_ne_bytes());
        if r != 0 {
            return r.cmp(&0);
        }
    }
    Ordering::Equal
}

fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// ipvsadm's service order: fwmark, family, protocol, address, port.
fn cmp_services(a: &ServiceKey, b: &ServiceKey) -> Ordering {
    let parts = |k: &ServiceKey| match k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (
            0u32,
            Family::of(addr),
            protocol_number(*protocol),
            Some(*addr),
            *port,
        ),
        ServiceKey::Fwmark { family, mark } => (*mark, *family, 0, None, 0),
    };
    let (am, af, ap, aa, aport) = parts(a);
    let (bm, bf, bp, ba, bport) = parts(b);
    am.cmp(&bm)
        .then(af.cmp(&bf))
        .then(ap.cmp(&bp))
        .then(match (aa, ba) {
            (Some(x), Some(y)) => cmp_addr(&x, &y),
            _ => Ordering::Equal,
        })
        .then(aport.cmp(&bport))
}

fn addr_port(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let flag = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!("{flag} {}", addr_port(addr, *port))
        }
        ServiceKey::Fwmark {
            family: Family::V4,
            mark,
        } => format!("-f {mark}"),
        ServiceKey::Fwmark {
            family: Family::V6,
            mark,
        } => format!("-f {mark} -6"),
    }
}

fn service_line(out: &mut String, s: &Service) {
    let _ = write!(out, "-A {} -s {}", service_name(&s.key), s.scheduler);
    if s.flags & svc_flag::PERSISTENT != 0 {
        let _ = write!(out, " -p {}", s.timeout);
        match s.key.family() {
            Family::V4 if s.netmask != u32::MAX => {
                let _ = write!(out, " -M {}", Ipv4Addr::from(s.netmask));
            }
            Family::V6 if s.netmask != 128 => {
                let _ = write!(out, " -M {}", s.netmask);
            }
            _ => {}
        }
    }
    if let Some(pe) = &s.pe_name {
        let _ = write!(out, " --pe {pe}");
    }
    if s.flags & svc_flag::ONEPACKET != 0 {
        out.push_str(" -o");
    }
    let names = spelling::sched_flag_names(&s.scheduler, s.flags);
    if !names.is_empty() {
        let _ = write!(out, " -b {}", names.join(","));
    }
    out.push('\n');
}

fn dest_line(out: &mut String, key: &ServiceKey, d: &Dest) {
    let method = match d.forward {
        Forward::Masq => "-m",
        Forward::Tunnel => "-i",
        Forward::Route | Forward::Local | Forward::Bypass => "-g",
    };
    let _ = write!(
        out,
        "-a {} -r {} {method} -w {}",
        service_name(key),
        addr_port(&d.addr, d.port),
        d.weight
    );
    if d.forward == Forward::Tunnel {
        let checksum = |flags: u16| {
            if flags & TUN_REMCSUM != 0 {
                "--tun-remcsum"
            } else if flags & TUN_CSUM != 0 {
                "--tun-csum"
            } else {
                "--tun-nocsum"
            }
        };
        match d.tunnel {
            Tunnel::Ipip => out.push_str(" --tun-type ipip"),
            Tunnel::Gue { port, flags } => {
                let _ = write!(out, " --tun-type gue --tun-port {port} {}", checksum(flags));
            }
            Tunnel::Gre { flags } => {
                let _ = write!(out, " --tun-type gre {}", checksum(flags));
            }
        }
    }
    out.push('\n');
}

/// The table as `ipvsadm-save -n` prints it.
pub fn export(table: &Table) -> String {
    let mut specs: Vec<&ServiceSpec> = table.services.values().collect();
    specs.sort_by(|a, b| cmp_services(&a.service.key, &b.service.key));
    let mut out = String::new();
    for spec in specs {
        service_line(&mut out, &spec.service);
        let mut dests: Vec<&Dest> = spec.dests.values().collect();
        dests.sort_by(|a, b| cmp_addr(&a.addr, &b.addr).then(a.port.cmp(&b.port)));
        for d in dests {
            dest_line(&mut out, &spec.service.key, d);
        }
    }
    out
}

/// One parsed rule line.
enum Rule {
    Service(Service),
    Dest(ServiceKey, Dest),
    Clear,
}

/// Parses `ipvsadm -R` text into a table. Blank lines and `#` comments are
/// skipped; `-C` empties what came before; every other line must be `-A`
/// or `-a`. Nothing is returned unless every line parses.
pub fn import(text: &str) -> Result<Table, RulesError> {
    let mut table = Table::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| RulesError {
            line: i + 1,
            message,
        };
        match parse_line(line).map_err(err)? {
            Rule::Clear => table = Table::new(),
            Rule::Service(s) => {
                if table.services.contains_key(&s.key) {
                    return Err(err(format!("service {} is defined twice", s.key)));
                }
                table.insert(ServiceSpec::new(s));
            }
            Rule::Dest(key, d) => {
                let spec = table.services.get_mut(&key).ok_or_else(|| {
                    err(format!(
                        "real server for {key}, which no earlier -A line defines"
                    ))
                })?;
                if spec.dests.insert((d.addr, d.port), d.clone()).is_some() {
                    return Err(err(format!(
                        "real server {} is listed twice for {key}",
                        addr_port(&d.addr, d.port)
                    )));
                }
            }
        }
    }
    Ok(table)
}

fn parse_addr_port(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    let bad = || format!("`{text}` is not ADDRESS[:PORT] (IPv6 as [ADDRESS]:PORT)");
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if tail.is_empty() => None,
            None => return Err(bad()),
        };
        return Ok((addr, port));
    }
    match text.split_once(':') {
        Some((a, p)) => Ok((
            a.parse().map_err(|_| bad())?,
            Some(p.parse().map_err(|_| bad())?),
        )),
        None => Ok((text.parse().map_err(|_| bad())?, None)),
    }
}

fn parse_line(line: &str) -> Result<Rule, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut it = words.iter().copied().peekable();
    let command = it.next().unwrap_or_default();
    let is_service = match command {
        "-A" | "--add-service" => true,
        "-a" | "--add-server" => false,
        "-C" | "--clear" => return Ok(Rule::Clear),
        other => {
            return Err(format!(
                "`{other}`: only -A, -a and -C lines can be imported"
            ));
        }
    };
    let mut proto_addr: Option<(Protocol, &str)> = None;
    let mut fwmark: Option<u32> = None;
    let mut v6 = false;
    let mut scheduler = "wlc".to_owned();
    let (mut persistent, mut timeout, mut netmask, mut pe, mut one_packet, mut sched_flags) =
        (false, DEFAULT_PERSISTENCE, None, None, false, 0u32);
    let (mut real, mut forward, mut weight, mut upper, mut lower) =
        (None, Forward::Route, 1i32, 0u32, 0u32);
    let (mut tun_type, mut tun_port, mut tun_flags) = (None, 0u16, 0u16);
    let need = |it: &mut std::iter::Peekable<std::slice::Iter<'_, &str>>,
                opt: &str|
     -> Result<String, String> {
        it.next()
            .map(|s| (*s).to_owned())
            .ok_or_else(|| format!("{opt} needs a value"))
    };
    let words_ref: Vec<&str> = it.collect();
    let mut it = words_ref.iter().peekable();
    while let Some(opt) = it.next() {
        let opt = *opt;
        let number = |v: String, what: &str| -> Result<u32, String> {
            v.parse()
                .map_err(|_| format!("{what}: `{v}` is not a number"))
        };
        match opt {
            "-t" | "--tcp-service" => {
                proto_addr = Some((Protocol::Tcp, it.next().ok_or("-t needs ADDRESS:PORT")?))
            }
            "-u" | "--udp-service" => {
                proto_addr = Some((Protocol::Udp, it.next().ok_or("-u needs ADDRESS:PORT")?))
            }
            "--sctp-service" => {
                proto_addr = Some((
                    Protocol::Sctp,
                    it.next().ok_or("--sctp-service needs ADDRESS:PORT")?,
                ))
            }
            "-f" | "--fwmark-service" => fwmark = Some(number(need(&mut it, opt)?, "fwmark")?),
            "-6" | "--ipv6" => v6 = true,
            "-s" | "--scheduler" => scheduler = need(&mut it, opt)?,
            "-p" | "--persistent" => {
                persistent = true;
                if let Some(v) = it.peek().filter(|v| v.chars().all(|c| c.is_ascii_digit())) {
                    timeout = number((**v).to_owned(), "persistence timeout")?;
                    it.next();
                }
            }
            "-M" | "--netmask" => netmask = Some(need(&mut it, opt)?),
            "--pe" => pe = Some(need(&mut it, opt)?),
            "-o" | "--ops" => one_packet = true,
            "-b" | "--sched-flags" => {
                for name in need(&mut it, opt)?.split(',') {
                    sched_flags |= spelling::sched_flag_bit(name)
                        .ok_or_else(|| format!("-b: unknown scheduler flag `{name}`"))?;
                }
            }
            "-r" | "--real-server" => {
                real = Some(parse_addr_port(
                    it.next().ok_or("-r needs ADDRESS[:PORT]")?,
                )?)
            }
            "-g" | "--gatewaying" => forward = Forward::Route,
            "-i" | "--ipip" => forward = Forward::Tunnel,
            "-m" | "--masquerading" => forward = Forward::Masq,
            "-w" | "--weight" => {
                let v = need(&mut it, opt)?;
                weight = v
                    .parse()
                    .map_err(|_| format!("weight: `{v}` is not a number"))?;
            }
            "-x" | "--u-threshold" => upper = number(need(&mut it, opt)?, "upper threshold")?,
            "-y" | "--l-threshold" => lower = number(need(&mut it, opt)?, "lower threshold")?,
            "--tun-type" => tun_type = Some(need(&mut it, opt)?),
            "--tun-port" => {
                tun_port = u16::try_from(number(need(&mut it, opt)?, "tunnel port")?)
                    .map_err(|_| "tunnel port above 65535".to_owned())?
            }
            "--tun-nocsum" => tun_flags = 0,
            "--tun-csum" => tun_flags = TUN_CSUM,
            "--tun-remcsum" => tun_flags = TUN_REMCSUM,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let key = match (proto_addr, fwmark) {
        (Some(_), Some(_)) => return Err("give either an address service or -f, not both".into()),
        (None, Some(mark)) => ServiceKey::Fwmark {
            family: if v6 { Family::V6 } else { Family::V4 },
            mark,
        },
        (Some((protocol, text)), None) => {
            let (addr, port) = parse_addr_port(text)?;
            ServiceKey::Addr {
                protocol,
                addr,
                port: port.ok_or_else(|| format!("`{text}`: the service needs a port"))?,
            }
        }
        (None, None) => return Err("no service: give -t, -u, --sctp-service or -f".into()),
    };
    if is_service {
        let family = key.family();
        let netmask = match (netmask, family) {
            (None, family) => spelling::default_netmask(family),
            (Some(m), Family::V4) => spelling::parse_netmask(family, &m)
                .ok_or_else(|| format!("-M: `{m}` is not an IPv4 netmask"))?,
            (Some(m), Family::V6) => spelling::parse_netmask(family, &m)
                .ok_or_else(|| format!("-M: `{m}` is not a prefix length 1-128"))?,
        };
        let mut flags = sched_flags;
        if persistent {
            flags |= svc_flag::PERSISTENT;
        }
        if one_packet {
            flags |= svc_flag::ONEPACKET;
        }
        return Ok(Rule::Service(Service {
            key,
            scheduler,
            flags,
            timeout: if persistent { timeout } else { 0 },
            netmask,
            pe_name: pe,
        }));
    }
    let (addr, port) = real.ok_or("-a needs -r ADDRESS[:PORT]")?;
    let service_port = match key {
        ServiceKey::Addr { port, .. } => port,
        ServiceKey::Fwmark { .. } => 0,
    };
    let tunnel = match tun_type.as_deref() {
        None | Some("ipip") => Tunnel::Ipip,
        Some("gue") => Tunnel::Gue {
            port: tun_port,
            flags: tun_flags,
        },
        Some("gre") => Tunnel::Gre { flags: tun_flags },
        Some(other) => {
            return Err(format!(
                "--tun-type: unknown type `{other}` (ipip, gue, gre)"
            ));
        }
    };
    Ok(Rule::Dest(
        key,
        Dest {
            addr,
            port: port.unwrap_or(service_port),
            forward,
            tunnel,
            weight,
            upper,
            lower,
        },
    ))
}

#[cfg(test)]
mod tests;
