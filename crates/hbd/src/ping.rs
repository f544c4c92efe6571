//! The connectivity score (ipfail): every ping address is pinged each
//! interval and is up while its last answer is younger than `deadping`.
//! A target scores one point while up, a group while any member is up.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::PingSettings;

/// What scores: each target alone, each group as one.
#[derive(Debug, Default)]
pub struct Layout {
    addresses: Vec<IpAddr>,
    units: Vec<Unit>,
}

#[derive(Debug)]
struct Unit {
    name: String,
    members: Range<usize>,
}

impl Layout {
    /// Targets first, then groups, as in the config.
    pub fn new(settings: &PingSettings) -> Self {
        let mut addresses = Vec::new();
        let mut units = Vec::new();
        for target in &settings.targets {
            units.push(Unit {
                name: target.to_string(),
                members: addresses.len()..addresses.len() + 1,
            });
            addresses.push(*target);
        }
        for group in &settings.groups {
            let start = addresses.len();
            addresses.extend(&group.targets);
            units.push(Unit {
                name: group.name.clone(),
                members: start..addresses.len(),
            });
        }
        Self { addresses, units }
    }

    /// Each target or group by name, and whether it is up, given which
    /// addresses are up (in address order).
    pub fn units(&self, up: &[bool]) -> Vec<(&str, bool)> {
        self.units
            .iter()
            .map(|unit| {
                let any = up
                    .get(unit.members.clone())
                    .is_some_and(|m| m.contains(&true));
                (unit.name.as_str(), any)
            })
            .collect()
    }

    /// How many targets and groups are up.
    pub fn score(&self, up: &[bool]) -> u32 {
        let count = self.units(up).iter().filter(|(_, up)| *up).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

/// The ping tasks and what they last found; stops them when dropped.
pub struct Pinger {
    up: watch::Receiver<Vec<bool>>,
    // Held so that `changed` waits forever when nothing is pinged.
    _sender: Arc<watch::Sender<Vec<bool>>>,
    _tasks: JoinSet<()>,
}

impl Pinger {
    /// Starts one task per address of `layout`.
    pub fn start(layout: &Layout, settings: Option<&PingSettings>) -> Self {
        let (sender, up) = watch::channel(vec![false; layout.addresses.len()]);
        let sender = Arc::new(sender);
        let mut tasks = JoinSet::new();
        if let Some(settings) = settings {
            for (index, address) in layout.addresses.iter().enumerate() {
                tasks.spawn(ping_address(
                    index,
                    *address,
                    Timing::from(settings),
                    Arc::clone(&sender),
                ));
            }
        }
        Self {
            up,
            _sender: sender,
            _tasks: tasks,
        }
    }

    /// Waits for an address to go up or down; returns them all.
    pub async fn changed(&mut self) -> Vec<bool> {
        if self.up.changed().await.is_err() {
            // Cannot happen while `self` holds the sender.
            std::future::pending::<()>().await;
        }
        self.up.borrow_and_update().clone()
    }
}

#[derive(Clone, Copy)]
struct Timing {
    interval: Duration,
    timeout: Duration,
    deadping: Duration,
}

impl From<&PingSettings> for Timing {
    fn from(s: &PingSettings) -> Self {
        Self {
            interval: s.interval,
            timeout: s.timeout,
            deadping: s.deadping,
        }
    }
}

/// Pings `address` every interval, forever; flips its entry in `up`.
async fn ping_address(
    index: usize,
    address: IpAddr,
    timing: Timing,
    up: Arc<watch::Sender<Vec<bool>>>,
) {
    let mut tick = tokio::time::interval(timing.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_answer: Option<Instant> = None;
    let mut warned = false;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        match tokio::time::timeout(timing.timeout, tandem_icmp::echo(address, None)).await {
            Ok(Ok(())) => last_answer = Some(sent),
            Ok(Err(error @ tandem_icmp::EchoError::Open(_))) if !warned => {
                // Without a socket the target can never answer: say so once.
                tracing::warn!(%address, %error, "cannot ping (needs CAP_NET_RAW or ping_group_range)");
                warned = true;
            }
            Ok(Err(error)) => tracing::debug!(%address, %error, "ping failed"),
            Err(_) => tracing::debug!(%address, "ping unanswered"),
        }
        let now_up = last_answer.is_some_and(|at| sent.duration_since(at) < timing.deadping);
        up.send_if_modified(|all| {
            let changed = all[index] != now_up;
            all[index] = now_up;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PingGroup;

    fn settings() -> PingSettings {
        PingSettings {
            targets: vec![IpAddr::from([198, 51, 100, 1])],
            groups: vec![PingGroup {
                name: "routers".into(),
                targets: vec![
                    IpAddr::from([203, 0, 113, 1]),
                    IpAddr::from([203, 0, 113, 2]),
                ],
            }],
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            deadping: Duration::from_secs(3),
        }
    }

    #[test]
    fn a_target_alone_and_a_group_as_one() {
        let layout = Layout::new(&settings());
        assert_eq!(layout.score(&[false, false, false]), 0);
        assert_eq!(layout.score(&[true, false, false]), 1);
        assert_eq!(
            layout.score(&[false, false, true]),
            1,
            "one member is enough"
        );
        assert_eq!(layout.score(&[true, true, true]), 2, "a group counts once");
        assert_eq!(
            layout.units(&[false, true, false]),
            [("198.51.100.1", false), ("routers", true)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_ping_never_changes() {
        let layout = Layout::default();
        let mut pinger = Pinger::start(&layout, None);
        let waited = tokio::time::timeout(Duration::from_secs(60), pinger.changed()).await;
        assert!(waited.is_err(), "no targets: no change, and no busy loop");
    }
}
