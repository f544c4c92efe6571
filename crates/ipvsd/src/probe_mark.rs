//! Firewall marks for `through_vip` probes. Each real whose check goes
//! through the VIP gets a mark of its own from a configured range, and the
//! table gets a *probe service* for it: a firewall-mark service with that
//! one real, weight 1 whatever its health. checkd sets the mark on a probe's
//! socket and connects to the VIP; the kernel looks firewall-mark services
//! up before address services, so the probe takes the forwarding path to
//! that real and no other, as a client's packet would. Probe services
//! schedule UDP one packet at a time, so no connection entry from one
//! probe catches a later one that reuses its source port.
//!
//! A real keeps its mark while it stays in the table (marks are handed out
//! lowest free first), and on start the marks of probe services already in
//! the kernel are adopted, so neither a change nor a restart moves a probe
//! service from one real to another.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::config::{ForwardName, VirtualService};
use crate::effective::RealId;
use crate::field::FieldError;
use crate::ipvs::abi::svc_flag;
use crate::ipvs::types::{Dest, Forward, Service, ServiceKey, Tunnel};
use crate::spelling;
use crate::table::{ServiceSpec, Table};

/// The marks probe services may use (`probe_marks:` in the config).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MarkRange {
    /// The first mark.
    pub first: u32,
    /// How many marks, from `first` on.
    pub count: u32,
}

impl Default for MarkRange {
    /// 65,536 marks from 0x7a000000: high bits, clear of the small marks
    /// operators give their own firewall-mark services.
    fn default() -> Self {
        Self {
            first: 0x7a00_0000,
            count: 65_536,
        }
    }
}

impl MarkRange {
    /// Checks the range; fields are relative to `probe_marks`.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.first == 0 {
            return Err(FieldError::new("first", "must be greater than 0"));
        }
        if self.count == 0 {
            return Err(FieldError::new("count", "must be at least 1"));
        }
        if self.first.checked_add(self.count - 1).is_none() {
            return Err(FieldError::new(
                "count",
                format!(
                    "{} marks from {:#x} go past 0xffffffff",
                    self.count, self.first
                ),
            ));
        }
        Ok(())
    }

    /// True when `mark` is in the range.
    pub fn contains(&self, mark: u32) -> bool {
        mark.checked_sub(self.first).is_some_and(|i| i < self.count)
    }

    /// Whether `key` is a probe service's: a firewall mark in the range.
    pub fn is_probe_service(&self, key: &ServiceKey) -> bool {
        matches!(*key, ServiceKey::Fwmark { mark, .. } if self.contains(mark))
    }

    fn marks(&self) -> impl Iterator<Item = u32> {
        (0..self.count).map(|i| self.first + i)
    }
}

/// Why marks cannot be handed out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarkError {
    /// A configured firewall-mark service uses a probe mark.
    #[error("{mark:#x} is a probe mark (probe_marks: {count} from {first:#x}): give the service another mark or move probe_marks", count = .range.count, first = .range.first)]
    Reserved {
        /// The service's index in the table.
        service: usize,
        /// Its mark.
        mark: u32,
        /// The probe marks.
        range: MarkRange,
    },
    /// More reals probe through the VIP than the range has marks.
    #[error("{wanted} reals probe through the VIP but probe_marks has {count} marks")]
    Exhausted {
        /// Reals wanting a mark.
        wanted: usize,
        /// Marks in the range.
        count: u32,
    },
}

impl MarkError {
    /// The error as a field of a table of services (`[2].fwmark`), or of
    /// the config (`probe_marks.count`) when no service is to blame.
    pub fn into_field_error(self) -> FieldError {
        let field = match &self {
            Self::Reserved { service, .. } => format!("[{service}].fwmark"),
            Self::Exhausted { .. } => "probe_marks.count".to_owned(),
        };
        FieldError::new(field, self.to_string())
    }
}

/// Which real has which mark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeMarks {
    range: MarkRange,
    by_real: BTreeMap<RealId, u32>,
}

impl ProbeMarks {
    /// No marks handed out yet.
    pub fn new(range: MarkRange) -> Self {
        Self {
            range,
            by_real: BTreeMap::new(),
        }
    }

    /// The mark of each `through_vip` real.
    pub fn by_real(&self) -> &BTreeMap<RealId, u32> {
        &self.by_real
    }

    /// Brings the marks in line with `services`: reals that still probe
    /// through the VIP keep theirs, the others' are freed, new ones get the
    /// lowest free. Fails, changing nothing, when a configured firewall-mark
    /// service lies in the range or the range has too few marks.
    pub fn assign(&mut self, services: &[VirtualService]) -> Result<(), MarkError> {
        self.assign_preferring(services, &BTreeMap::new())
    }

    /// [`ProbeMarks::assign`], but a real without a mark takes the one its
    /// probe service has in `kernel` (a table read at start), if free.
    /// Returns true when any real's mark changed.
    pub fn adopt(&mut self, services: &[VirtualService], kernel: &Table) -> bool {
        let mut found = BTreeMap::new();
        for (key, spec) in &kernel.services {
            let ServiceKey::Fwmark { mark, .. } = *key else {
                continue;
            };
            let mut dests = spec.dests.values();
            if let (true, Some(dest), None) =
                (self.range.contains(mark), dests.next(), dests.next())
            {
                found
                    .entry((dest.addr, dest.port))
                    .or_insert_with(Vec::new)
                    .push(mark);
            }
        }
        let before = self.by_real.clone();
        // Adopting only moves marks within the range; a failure here would
        // have failed the same services' validation already.
        self.by_real.clear();
        if self.assign_preferring(services, &found).is_err() {
            self.by_real = before.clone();
        }
        self.by_real != before
    }

    fn assign_preferring(
        &mut self,
        services: &[VirtualService],
        preferred: &BTreeMap<(std::net::IpAddr, u16), Vec<u32>>,
    ) -> Result<(), MarkError> {
        let range = self.range;
        if let Some((service, mark)) = services
            .iter()
            .enumerate()
            .find_map(|(i, vs)| vs.fwmark.filter(|m| range.contains(*m)).map(|m| (i, m)))
        {
            return Err(MarkError::Reserved {
                service,
                mark,
                range,
            });
        }
        let wanted = through_vip_reals(services);
        let mut next: BTreeMap<RealId, u32> = self
            .by_real
            .iter()
            .filter(|(id, _)| wanted.contains(id))
            .map(|(id, mark)| (*id, *mark))
            .collect();
        let mut used: BTreeSet<u32> = next.values().copied().collect();
        for id in &wanted {
            if next.contains_key(id) {
                continue;
            }
            let (_, address, port) = *id;
            let kept = preferred
                .get(&(address, port))
                .and_then(|marks| marks.iter().find(|m| !used.contains(m)));
            let mark =
                match kept {
                    Some(mark) => *mark,
                    None => self.range.marks().find(|m| !used.contains(m)).ok_or(
                        MarkError::Exhausted {
                            wanted: wanted.len(),
                            count: range.count,
                        },
                    )?,
                };
            used.insert(mark);
            next.insert(*id, mark);
        }
        self.by_real = next;
        Ok(())
    }

    /// Adds the probe services of `services` to `table`.
    pub fn add_probe_services(&self, services: &[VirtualService], table: &mut Table) {
        for vs in services {
            let Some(key) = vs.key() else { continue };
            for real in &vs.reals {
                let port = vs.real_port(real);
                let Some(&mark) = self.by_real.get(&(key, real.address, port)) else {
                    continue;
                };
                let family = key.family();
                let service = Service {
                    key: ServiceKey::Fwmark { family, mark },
                    scheduler: "rr".into(),
                    // A UDP probe's connection entry is not kept: a later
                    // probe from the same source port (another real's,
                    // another mark) is scheduled afresh, not sent after it.
                    flags: svc_flag::ONEPACKET,
                    timeout: 0,
                    netmask: spelling::default_netmask(family),
                    pe_name: None,
                };
                table.insert(ServiceSpec::new(service).with(Dest {
                    addr: real.address,
                    port,
                    forward: real.forward.unwrap_or(vs.forward).forward(),
                    tunnel: Tunnel::Ipip,
                    weight: 1,
                    upper: 0,
                    lower: 0,
                }));
            }
        }
    }
}

/// The reals whose check (their own, else their service's) goes through the
/// VIP, in table order.
fn through_vip_reals(services: &[VirtualService]) -> Vec<RealId> {
    services
        .iter()
        .filter_map(|vs| vs.key().map(|key| (vs, key)))
        .flat_map(|(vs, key)| {
            vs.reals
                .iter()
                .filter(|real| vs.check_of(real).is_some_and(|c| c.through_vip))
                .map(move |real| (key, real.address, vs.real_port(real)))
        })
        .collect()
}

/// Why `vs` cannot probe its real with `forward` through the VIP, if it
/// cannot: the VIP must be an IPv4 address service's, the real reached by
/// route or tunnel, the check one a socket makes.
pub fn through_vip_refusal(
    vs: &VirtualService,
    forward: ForwardName,
    kind: crate::check::CheckType,
) -> Option<String> {
    use crate::check::CheckType::{Dns, Http, Https, Tcp, Udp};
    if vs.fwmark.is_some() {
        return Some("a firewall-mark service has no VIP to probe through".into());
    }
    if vs.address.is_some_and(|a| a.is_ipv6()) {
        return Some("only IPv4 services can be probed through the VIP".into());
    }
    if forward.forward() == Forward::Masq {
        return Some(
            "a NAT real is reached from the director at its own address: through_vip is for route and tunnel reals".into(),
        );
    }
    if !matches!(kind, Tcp | Http | Https | Udp | Dns) {
        return Some(format!(
            "a {} check cannot go through the VIP (tcp, http, https, udp and dns can)",
            kind.name()
        ));
    }
    None
}

#[cfg(test)]
mod tests;
