//! The difference between two tables as the minimal list of kernel
//! operations, in an order that never leaves a kept service without its
//! real servers: services are added before their reals, new and changed
//! reals before removed ones, and removed services last. Never a flush.

use std::fmt;
use std::net::IpAddr;

use crate::ipvs::types::{Dest, Service, ServiceKey};
use crate::table::Table;

/// One kernel operation, named like the `ipvsadm` option that does it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `-A`: add a service.
    AddService(Service),
    /// `-E`: change a service's settings.
    EditService(Service),
    /// `-D`: delete a service with its reals.
    DeleteService(ServiceKey),
    /// `-a`: add a real server.
    AddDest(ServiceKey, Dest),
    /// `-e`: change a real server's settings.
    EditDest(ServiceKey, Dest),
    /// `-d`: remove a real server.
    DeleteDest(ServiceKey, IpAddr, u16),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddService(s) => write!(f, "add service {} ({})", s.key, s.scheduler),
            Self::EditService(s) => write!(f, "edit service {} ({})", s.key, s.scheduler),
            Self::DeleteService(k) => write!(f, "delete service {k}"),
            Self::AddDest(k, d) => write!(
                f,
                "add real {}:{} to {k} (weight {})",
                d.addr, d.port, d.weight
            ),
            Self::EditDest(k, d) => write!(
                f,
                "edit real {}:{} of {k} (weight {})",
                d.addr, d.port, d.weight
            ),
            Self::DeleteDest(k, a, p) => write!(f, "delete real {a}:{p} of {k}"),
        }
    }
}

/// The operations that turn `current` into `desired`.
pub fn plan(current: &Table, desired: &Table) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut removals = Vec::new();
    for (key, want) in &desired.services {
        match current.services.get(key) {
            None => {
                ops.push(Op::AddService(want.service.clone()));
                ops.extend(want.dests.values().map(|d| Op::AddDest(*key, d.clone())));
            }
            Some(have) => {
                if have.service != want.service {
                    ops.push(Op::EditService(want.service.clone()));
                }
                for (dkey, d) in &want.dests {
                    match have.dests.get(dkey) {
                        None => ops.push(Op::AddDest(*key, d.clone())),
                        Some(old) if old != d => ops.push(Op::EditDest(*key, d.clone())),
                        Some(_) => {}
                    }
                }
                removals.extend(
                    have.dests
                        .keys()
                        .filter(|dkey| !want.dests.contains_key(dkey))
                        .map(|(addr, port)| Op::DeleteDest(*key, *addr, *port)),
                );
            }
        }
    }
    ops.extend(removals);
    ops.extend(
        current
            .services
            .keys()
            .filter(|key| !desired.services.contains_key(key))
            .map(|key| Op::DeleteService(*key)),
    );
    ops
}

/// Applies `op` to `table` as the kernel would (for fakes and dry runs).
/// Returns false, changing nothing, where the kernel would refuse it.
pub fn apply_to(table: &mut Table, op: &Op) -> bool {
    use crate::table::ServiceSpec;
    match op {
        Op::AddService(s) => {
            if table.services.contains_key(&s.key) {
                return false;
            }
            table.insert(ServiceSpec::new(s.clone()));
        }
        Op::EditService(s) => match table.services.get_mut(&s.key) {
            Some(spec) => spec.service = s.clone(),
            None => return false,
        },
        Op::DeleteService(k) => return table.services.remove(k).is_some(),
        Op::AddDest(k, d) => match table.services.get_mut(k) {
            Some(spec) if !spec.dests.contains_key(&(d.addr, d.port)) => {
                spec.dests.insert((d.addr, d.port), d.clone());
            }
            _ => return false,
        },
        Op::EditDest(k, d) => match table
            .services
            .get_mut(k)
            .and_then(|s| s.dests.get_mut(&(d.addr, d.port)))
        {
            Some(old) => *old = d.clone(),
            None => return false,
        },
        Op::DeleteDest(k, a, p) => {
            return table
                .services
                .get_mut(k)
                .is_some_and(|s| s.dests.remove(&(*a, *p)).is_some());
        }
    }
    true
}

#[cfg(test)]
mod tests;
