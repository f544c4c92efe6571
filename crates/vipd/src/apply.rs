//! [`apply`]: makes the host match a [`Layout`], one kernel call at a time,
//! recording the inverse of each; if a call fails, the calls already made
//! are undone in reverse order, so a failed transition leaves the host as
//! it found it. Before the first change a preflight checks everything it
//! can (interfaces exist, no address belongs to somebody else, the family
//! is enabled, every sysctl exists): bad input changes nothing.
//!
//! Order of the changes: remove addresses no longer wanted; put recorded
//! sysctls back; set sysctls; take tunnel links down or up; add the wanted
//! addresses. So a real server hides ARP before the VIP reaches `lo`, and
//! a director drops the hidden VIP before it raises the announced one.

use std::net::IpAddr;
use std::path::Path;

use crate::host::{Host, HostError, Link, Snapshot};
use crate::journal::{Journal, JournalError};
use crate::layout::{Layout, Restore};
use crate::vip::Cidr;

/// Why the host could not be made to match.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A wanted address names an interface this host does not have.
    #[error("{cidr}: interface {interface} does not exist{hint}")]
    MissingInterface {
        /// The address.
        cidr: Cidr,
        /// The interface.
        interface: String,
        /// A hint for tunnel devices.
        hint: &'static str,
    },
    /// The address is already on the host, put there by someone else.
    #[error(
        "{addr} is already a local address on {interface}, not one vipd added: refusing to manage it (remove it, or remove it from vipd's config)"
    )]
    NotOurs {
        /// The address.
        addr: IpAddr,
        /// Where it is.
        interface: String,
    },
    /// An IPv6 address on an interface with IPv6 off.
    #[error(
        "{cidr}: interface {interface} has IPv6 disabled (net.ipv6.conf.{interface}.disable_ipv6=1)"
    )]
    FamilyDisabled {
        /// The address.
        cidr: Cidr,
        /// The interface.
        interface: String,
    },
    /// A kernel call failed (after the calls before it were undone).
    #[error("{source}{}", rollback_note(.rollback))]
    Host {
        /// The call that failed.
        #[source]
        source: HostError,
        /// Undo calls that failed in turn (empty: the host is as it was).
        rollback: Vec<HostError>,
    },
    /// The journal could not be written (after undoing).
    #[error("{0}")]
    Journal(#[from] JournalError),
}

fn rollback_note(failed: &[HostError]) -> String {
    if failed.is_empty() {
        "; everything done before it was undone".to_owned()
    } else {
        let list: Vec<String> = failed.iter().map(ToString::to_string).collect();
        format!("; undoing failed too: {}", list.join("; "))
    }
}

/// One change made, and how to take it back.
#[derive(Debug)]
enum Undo {
    /// An address was added: remove it.
    Added(Link, Cidr),
    /// An address was removed: add it again.
    Removed(Link, Cidr, Option<String>),
    /// A sysctl was written: write `previous` back; `journal` is the
    /// journal's entry for the key before the change.
    Sysctl {
        key: String,
        previous: String,
        journal: Option<String>,
    },
    /// A link was set up (`true`) or down: set it back.
    Link(Link, bool),
}

/// The changes a successful [`apply`] made, in order; [`Applied::undo`]
/// takes them back (when a later step of the transition fails).
#[derive(Debug, Default)]
pub struct Applied {
    undo: Vec<Undo>,
    /// True when any address was added or removed.
    pub addresses_changed: bool,
}

impl Applied {
    /// Undoes every change, newest first; returns the undo calls that failed.
    pub fn undo(self, host: &impl Host, journal: &mut Journal, path: &Path) -> Vec<HostError> {
        let failed = run_undo(host, journal, self.undo);
        if let Err(e) = journal.save(path) {
            tracing::error!(error = %e, "could not save the journal after undoing");
        }
        failed
    }
}

/// Makes `host` match `layout`. `journal` (saved at `path` after every
/// change to it) records the sysctls' original values.
pub fn apply(
    host: &impl Host,
    layout: &Layout,
    journal: &mut Journal,
    path: &Path,
) -> Result<Applied, ApplyError> {
    let snapshot = Snapshot::read(host).map_err(|source| ApplyError::Host {
        source,
        rollback: Vec::new(),
    })?;
    let links = preflight(host, &snapshot, layout)?;
    let mut done = Applied::default();
    match run(host, &snapshot, &links, layout, journal, path, &mut done) {
        Ok(()) => Ok(done),
        Err(Failure::Host(source)) => {
            let rollback = run_undo(host, journal, done.undo);
            journal.save(path)?;
            Err(ApplyError::Host { source, rollback })
        }
        Err(Failure::Journal(e)) => {
            let _ = run_undo(host, journal, done.undo);
            let _ = journal.save(path);
            Err(ApplyError::Journal(e))
        }
    }
}

/// Checks the layout against the host; returns each wanted address's link.
fn preflight(
    host: &impl Host,
    snapshot: &Snapshot,
    layout: &Layout,
) -> Result<Vec<Link>, ApplyError> {
    let mut links = Vec::new();
    for wanted in &layout.addresses {
        let link =
            snapshot
                .link(&wanted.interface)
                .ok_or_else(|| ApplyError::MissingInterface {
                    cidr: wanted.cidr,
                    interface: wanted.interface.clone(),
                    hint: match wanted.interface.as_str() {
                        "tunl0" => " (load the ipip module)",
                        "ip6tnl0" => " (load the ip6_tunnel module)",
                        _ => "",
                    },
                })?;
        if let Some(theirs) = snapshot.holders(wanted.cidr.addr).find(|a| !a.is_ours()) {
            let interface = snapshot
                .link_by_index(theirs.ifindex)
                .map_or_else(|| format!("index {}", theirs.ifindex), |l| l.name.clone());
            return Err(ApplyError::NotOurs {
                addr: wanted.cidr.addr,
                interface,
            });
        }
        if wanted.cidr.addr.is_ipv6() {
            let key = format!("net/ipv6/conf/{}/disable_ipv6", wanted.interface);
            if host.read_sysctl(&key).map_or(true, |v| v != "0") {
                return Err(ApplyError::FamilyDisabled {
                    cidr: wanted.cidr,
                    interface: wanted.interface.clone(),
                });
            }
        }
        links.push(link.clone());
    }
    for (key, _) in &layout.sysctls {
        host.read_sysctl(key).map_err(|source| ApplyError::Host {
            source,
            rollback: Vec::new(),
        })?;
    }
    Ok(links)
}

enum Failure {
    Host(HostError),
    Journal(JournalError),
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        Self::Host(e)
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        Self::Journal(e)
    }
}

fn run(
    host: &impl Host,
    snapshot: &Snapshot,
    links: &[Link],
    layout: &Layout,
    journal: &mut Journal,
    path: &Path,
    done: &mut Applied,
) -> Result<(), Failure> {
    // 1. Addresses vipd added that are no longer wanted (or moved).
    for addr in snapshot.addresses.iter().filter(|a| a.is_ours()) {
        let still_wanted = layout
            .addresses
            .iter()
            .zip(links)
            .any(|(w, l)| l.index == addr.ifindex && w.cidr == addr.cidr);
        if still_wanted {
            continue;
        }
        let Some(link) = snapshot.link_by_index(addr.ifindex) else {
            continue;
        };
        host.del_address(link, addr.cidr)?;
        tracing::info!(address = %addr.cidr, interface = %link.name, "address removed");
        done.addresses_changed = true;
        done.undo
            .push(Undo::Removed(link.clone(), addr.cidr, addr.label.clone()));
    }
    // 2. Recorded sysctls to put back.
    let setting = |key: &str| layout.sysctls.iter().any(|(k, _)| k == key);
    let restore: Vec<String> = match &layout.restore {
        Restore::All => journal.sysctls.keys().cloned().collect(),
        Restore::Keys(keys) => keys
            .iter()
            .filter(|k| journal.sysctls.contains_key(*k))
            .cloned()
            .collect(),
    };
    for key in restore.into_iter().filter(|k| !setting(k)) {
        let Some(original) = journal.sysctls.get(&key).cloned() else {
            continue;
        };
        let previous = host.read_sysctl(&key)?;
        if previous != original {
            host.write_sysctl(&key, &original)?;
            tracing::info!(%key, value = %original, "sysctl put back");
        }
        journal.sysctls.remove(&key);
        journal.save(path)?;
        done.undo.push(Undo::Sysctl {
            key,
            previous,
            journal: Some(original),
        });
    }
    // 3. Sysctls to set.
    for (key, value) in &layout.sysctls {
        let previous = host.read_sysctl(key)?;
        if &previous == value {
            continue;
        }
        let entry = journal.sysctls.get(key).cloned();
        if entry.is_none() {
            journal.sysctls.insert(key.clone(), previous.clone());
            journal.save(path)?;
        }
        done.undo.push(Undo::Sysctl {
            key: key.clone(),
            previous: previous.clone(),
            journal: entry,
        });
        host.write_sysctl(key, value)?;
        tracing::info!(%key, %value, was = %previous, "sysctl set");
    }
    // 4. Tunnel links: down what vipd raised and no longer needs; up what it needs.
    let lowering: Vec<String> = journal
        .links_up
        .iter()
        .filter(|n| !layout.links_up.contains(n))
        .cloned()
        .collect();
    for name in lowering {
        if let Some(link) = snapshot.link(&name).filter(|l| l.up) {
            host.set_link_up(link, false)?;
            done.undo.push(Undo::Link(link.clone(), false));
        }
        journal.links_up.remove(&name);
        journal.save(path)?;
    }
    for name in &layout.links_up {
        if let Some(link) = snapshot.link(name).filter(|l| !l.up) {
            journal.links_up.insert(name.clone());
            journal.save(path)?;
            done.undo.push(Undo::Link(link.clone(), true));
            host.set_link_up(link, true)?;
        }
    }
    // 5. Wanted addresses not there yet.
    for (wanted, link) in layout.addresses.iter().zip(links) {
        if snapshot.has(link.index, wanted.cidr) {
            continue;
        }
        host.add_address(link, wanted.cidr, wanted.label.as_deref())?;
        tracing::info!(address = %wanted.cidr, interface = %link.name, "address added");
        done.addresses_changed = true;
        done.undo.push(Undo::Added(link.clone(), wanted.cidr));
    }
    Ok(())
}

fn run_undo(host: &impl Host, journal: &mut Journal, undo: Vec<Undo>) -> Vec<HostError> {
    let mut failed = Vec::new();
    for step in undo.into_iter().rev() {
        let result = match step {
            Undo::Added(link, cidr) => host.del_address(&link, cidr),
            Undo::Removed(link, cidr, label) => host.add_address(&link, cidr, label.as_deref()),
            Undo::Sysctl {
                key,
                previous,
                journal: entry,
            } => {
                let result = host.write_sysctl(&key, &previous);
                match entry {
                    Some(original) => journal.sysctls.insert(key, original),
                    None => journal.sysctls.remove(&key),
                };
                result
            }
            Undo::Link(link, raised) => {
                if raised {
                    journal.links_up.remove(&link.name);
                } else {
                    journal.links_up.insert(link.name.clone());
                }
                host.set_link_up(&link, !raised)
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "undoing a change failed");
            failed.push(e);
        }
    }
    failed
}

#[cfg(test)]
mod tests;
