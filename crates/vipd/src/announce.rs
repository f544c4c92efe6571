//! [`Announcer`]: sends the announcement frames of the director VIPs —
//! gratuitous ARP for IPv4, unsolicited NA for IPv6 — each only on its
//! own interface, paced by a gap between frames, and keeps per-address
//! counts. [`Announcer::schedule`] runs the rounds after the first: the
//! rest of the set, a second set after `repeat_after`, and the periodic
//! refresh.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{AnnounceSettings, ArpForms};
use crate::frames::{ArpOp, gratuitous_arp, unsolicited_na};
use crate::host::Snapshot;
use crate::layout::Wanted;
use crate::wire::LinkSender;

/// One address to announce, resolved against the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The VIP.
    pub addr: IpAddr,
    /// Its interface's index.
    pub ifindex: u32,
    /// Its interface's name.
    pub interface: String,
    /// Its interface's MAC.
    pub mac: [u8; 6],
    /// IPv6 only: the source of the NA (the interface's link-local
    /// address, or the VIP when it has none).
    pub source: Option<Ipv6Addr>,
}

/// Resolves director VIPs to announcement targets. A VIP whose interface
/// has no Ethernet address (loopback, a tunnel) is skipped with a warning:
/// nothing on such a link keeps a neighbour table.
pub fn targets(wanted: &[Wanted], snapshot: &Snapshot) -> Vec<Target> {
    let mut out = Vec::new();
    for w in wanted {
        let Some(link) = snapshot.link(&w.interface) else {
            continue;
        };
        let Some(mac) = link.mac else {
            tracing::warn!(vip = %w.cidr, interface = %w.interface, "not announced: the interface has no Ethernet address");
            continue;
        };
        let source = match w.cidr.addr {
            IpAddr::V4(_) => None,
            IpAddr::V6(vip) => Some(
                snapshot
                    .addresses
                    .iter()
                    .filter(|a| a.ifindex == link.index)
                    .find_map(|a| match a.cidr.addr {
                        IpAddr::V6(ll) if ll.is_unicast_link_local() => Some(ll),
                        _ => None,
                    })
                    .unwrap_or(vip),
            ),
        };
        out.push(Target {
            addr: w.cidr.addr,
            ifindex: link.index,
            interface: w.interface.clone(),
            mac,
            source,
        });
    }
    out
}

/// Counters of one address.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddressStats {
    /// Frames sent.
    pub frames: u64,
    /// When the last one went, in ms since the Unix epoch.
    pub last_unix_ms: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Sends announcement rounds. Cheap to clone; clones share counters.
#[derive(Clone)]
pub struct Announcer {
    stats: Arc<Mutex<HashMap<IpAddr, AddressStats>>>,
    frames_total: Family<KindLabel, Counter>,
}

impl Announcer {
    /// An announcer whose frame counter is registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let frames_total = Family::<KindLabel, Counter>::default();
        registry.register(
            "vipd_announcement_frames",
            "Announcement frames sent, by kind (arp_request, arp_reply, na)",
            frames_total.clone(),
        );
        Self {
            stats: Arc::default(),
            frames_total,
        }
    }

    /// The counters of `addr`.
    pub fn stats(&self, addr: IpAddr) -> AddressStats {
        self.stats
            .lock()
            .map(|s| s.get(&addr).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Sends one round for `targets`, `gap` apart, blocking the calling
    /// thread; returns the frames sent. Stops at the first send that fails.
    pub fn round_blocking(
        &self,
        targets: &[Target],
        settings: &AnnounceSettings,
    ) -> std::io::Result<u64> {
        let mut senders: HashMap<u32, LinkSender> = HashMap::new();
        let mut sent = 0;
        for target in targets {
            for (kind, frame) in frames_of(target, settings) {
                if sent > 0 && !settings.gap.is_zero() {
                    std::thread::sleep(settings.gap);
                }
                let sender = match senders.entry(target.ifindex) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(LinkSender::open(target.ifindex)?)
                    }
                };
                sender.send(&frame).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("announcing {} on {}: {e}", target.addr, target.interface),
                    )
                })?;
                sent += 1;
                self.frames_total.get_or_create(&KindLabel { kind }).inc();
                self.count(target.addr);
            }
        }
        Ok(sent)
    }

    /// Sends one round on a blocking thread.
    pub async fn round(
        &self,
        targets: Vec<Target>,
        settings: AnnounceSettings,
    ) -> std::io::Result<u64> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.round_blocking(&targets, &settings))
            .await
            .map_err(|e| std::io::Error::other(format!("the announcing thread failed: {e}")))?
    }

    /// Runs the rounds after the first until `stop` is cancelled: the rest
    /// of the set, the second set, then the refresh.
    pub async fn schedule(
        self,
        targets: Vec<Target>,
        settings: AnnounceSettings,
        stop: CancellationToken,
    ) {
        let rest_of_set = settings.count.saturating_sub(1);
        let mut plan: Vec<Duration> = vec![settings.interval; rest_of_set as usize];
        if let Some(delay) = settings.repeat_after {
            let first_set = settings.interval * rest_of_set;
            plan.push(delay.saturating_sub(first_set));
            plan.extend(std::iter::repeat_n(settings.interval, rest_of_set as usize));
        }
        let refresh = settings.refresh;
        let waits = plan
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat(refresh).take_while(Option::is_some));
        for wait in waits.flatten() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = self.round(targets.clone(), settings.clone()).await {
                tracing::warn!(error = %e, "an announcement round failed");
            }
        }
    }

    fn count(&self, addr: IpAddr) {
        if let Ok(mut stats) = self.stats.lock() {
            let s = stats.entry(addr).or_default();
            s.frames += 1;
            s.last_unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
    }
}

/// The frames one round sends for `target`, with their metric kind.
fn frames_of(target: &Target, settings: &AnnounceSettings) -> Vec<(&'static str, Vec<u8>)> {
    match target.addr {
        IpAddr::V4(ip) => {
            let ops: &[(ArpOp, &'static str)] = match settings.arp {
                ArpForms::Both => &[(ArpOp::Request, "arp_request"), (ArpOp::Reply, "arp_reply")],
                ArpForms::Request => &[(ArpOp::Request, "arp_request")],
                ArpForms::Reply => &[(ArpOp::Reply, "arp_reply")],
            };
            ops.iter()
                .map(|(op, kind)| (*kind, gratuitous_arp(target.mac, ip, *op)))
                .collect()
        }
        IpAddr::V6(ip) => vec![(
            "na",
            unsolicited_na(
                target.mac,
                target.source.unwrap_or(ip),
                ip,
                settings.na_router,
            ),
        )],
    }
}
