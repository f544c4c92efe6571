//! hbd's config file: who is in the cluster, the heartbeat links, the
//! timers, the key file, how ownership is decided, the fence command and
//! the resource group. It is the seed's `ha.cf` and `haresources` in one
//! YAML file; `authkeys` stays a separate file (see [`crate::keys`]).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tandem_daemon::{ConfigError, DaemonConfig, DaemonSettings};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbdConfig {
    /// Sockets, TLS, metrics, logging.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// The cluster id every heartbeat carries; heartbeats of another
    /// cluster on the same wire are dropped.
    #[serde(default)]
    pub cluster: String,
    /// This node's name: one of `nodes`.
    #[serde(default)]
    pub node: String,
    /// Every node of the cluster, this one included (ha.cf `node` lines).
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// The key file (authkeys): mode 0600 or stricter.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Heartbeat timers.
    #[serde(default)]
    pub timers: Timers,
    /// The heartbeat links: any mix, all used at once.
    #[serde(default)]
    pub links: Links,
    /// With `auto_failback: true` the group goes back to `preferred` when
    /// it returns; with false it stays where it is.
    #[serde(default)]
    pub auto_failback: bool,
    /// The node that should own the group when all else is equal and
    /// `auto_failback` is on (haresources' first field).
    pub preferred: Option<String>,
    /// Ping targets for the connectivity score (ipfail's ping nodes).
    #[serde(default)]
    pub ping: Option<PingSettings>,
    /// STONITH: run before taking over from a peer that was ACTIVE.
    pub fence: Option<CommandSpec>,
    /// Run on every change of this node's role (fire and forget).
    pub notify: Option<CommandSpec>,
    /// The resource group in order (haresources, left to right).
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
    /// How long a node that failed its group stays ineligible before it
    /// may try again (default 10s).
    #[serde(default = "default_failure_hold", with = "humantime_serde")]
    pub failure_hold: Duration,
}

fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/tandem/hbd.keys")
}

fn default_failure_hold() -> Duration {
    Duration::from_secs(10)
}

impl Default for HbdConfig {
    fn default() -> Self {
        Self {
            daemon: DaemonSettings::default(),
            cluster: String::new(),
            node: String::new(),
            nodes: Vec::new(),
            key_file: default_key_file(),
            timers: Timers::default(),
            links: Links::default(),
            auto_failback: false,
            preferred: None,
            ping: None,
            fence: None,
            notify: None,
            resources: Vec::new(),
            failure_hold: default_failure_hold(),
        }
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Its name, as it puts it in its heartbeats.
    pub name: String,
    /// Higher wins when score and preference are equal (default 100).
    #[serde(default = "default_priority")]
    pub priority: u32,
}

fn default_priority() -> u32 {
    100
}

/// The heartbeat timers (ha.cf `keepalive`, `warntime`, `deadtime`,
/// `initdead`), any of them sub-second.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    /// How often a heartbeat goes out on every link.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// A heartbeat later than this is logged and counted.
    #[serde(with = "humantime_serde")]
    pub warntime: Duration,
    /// A peer heard on no link for this long is dead.
    #[serde(with = "humantime_serde")]
    pub deadtime: Duration,
    /// At start, how long to wait for a peer never heard before taking
    /// the group alone.
    #[serde(with = "humantime_serde")]
    pub initdead: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_millis(100),
            warntime: Duration::from_millis(300),
            deadtime: Duration::from_millis(500),
            initdead: Duration::from_secs(5),
        }
    }
}

impl Timers {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.keepalive < Duration::from_millis(5) {
            return Err(("keepalive", "must be at least 5ms".into()));
        }
        if self.deadtime < self.keepalive * 2 {
            return Err((
                "deadtime",
                format!(
                    "must be at least twice keepalive ({}), or one lost heartbeat is a failover",
                    humantime::format_duration(self.keepalive)
                ),
            ));
        }
        if self.warntime < self.keepalive || self.warntime > self.deadtime {
            return Err(("warntime", "must lie between keepalive and deadtime".into()));
        }
        if self.initdead < self.deadtime {
            return Err(("initdead", "must be at least deadtime".into()));
        }
        Ok(())
    }
}

/// The heartbeat links (ha.cf `ucast`, `mcast`, `bcast`, `serial`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// The UDP port of every UDP link (ha.cf `udpport`, default 694).
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// Unicast: send to one peer address from an interface.
    #[serde(default)]
    pub ucast: Vec<UcastLink>,
    /// Multicast: send to a group on an interface.
    #[serde(default)]
    pub mcast: Vec<McastLink>,
    /// Broadcast on an interface.
    #[serde(default)]
    pub bcast: Vec<BcastLink>,
    /// A serial line.
    #[serde(default)]
    pub serial: Vec<SerialLink>,
}

fn default_udp_port() -> u16 {
    694
}

/// A unicast UDP link.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UcastLink {
    /// The interface to send from and listen on.
    pub interface: String,
    /// The peer's address.
    pub peer: IpAddr,
}

/// A multicast UDP link.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct McastLink {
    /// The interface to send from and join the group on.
    pub interface: String,
    /// The IPv4 group, e.g. 239.0.0.1.
    pub group: Ipv4Addr,
    /// The multicast TTL (default 1: this segment only).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_ttl() -> u32 {
    1
}

/// A broadcast UDP link.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BcastLink {
    /// The interface to broadcast on (to 255.255.255.255).
    pub interface: String,
}

/// A serial link.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SerialLink {
    /// The device, e.g. `/dev/ttyS0`.
    pub device: PathBuf,
    /// The line speed (ha.cf `baud`, default 19200).
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    19_200
}

/// Ping targets for the connectivity score (ipfail): each target that
/// answers, and each group with any member answering, scores one point.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PingSettings {
    /// Ping nodes: one point each while it answers.
    #[serde(default)]
    pub targets: Vec<IpAddr>,
    /// Ping groups: one point each while any member answers.
    #[serde(default)]
    pub groups: Vec<PingGroup>,
    /// How often each address is pinged (default 1s).
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long to wait for each answer (default 500ms).
    #[serde(default = "default_ping_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// An address unanswered for this long is down (ha.cf's `deadping`;
    /// default 3s).
    #[serde(default = "default_deadping", with = "humantime_serde")]
    pub deadping: Duration,
}

/// Addresses that count as one ping target (ha.cf's `ping_group`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PingGroup {
    /// Its name, for logs and status.
    pub name: String,
    /// Its members.
    pub targets: Vec<IpAddr>,
}

impl PingSettings {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.targets.is_empty() && self.groups.is_empty() {
            return Err((
                "targets".into(),
                "ping needs at least one target or group".into(),
            ));
        }
        if self.interval.is_zero() {
            return Err(("interval".into(), "must be greater than zero".into()));
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            return Err((
                "timeout".into(),
                format!(
                    "must be greater than zero and at most the interval ({})",
                    humantime::format_duration(self.interval)
                ),
            ));
        }
        if self.deadping < self.interval {
            return Err((
                "deadping".into(),
                format!(
                    "must be at least the interval ({}), or one lost answer marks the target down",
                    humantime::format_duration(self.interval)
                ),
            ));
        }
        let addresses = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("targets[{i}]"), a))
            .chain(self.groups.iter().enumerate().flat_map(|(g, group)| {
                group
                    .targets
                    .iter()
                    .enumerate()
                    .map(move |(i, a)| (format!("groups[{g}].targets[{i}]"), a))
            }));
        for (field, address) in addresses {
            if address.is_unspecified() || address.is_multicast() {
                return Err((field, format!("{address} cannot answer a ping")));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (g, group) in self.groups.iter().enumerate() {
            if group.name.is_empty() || !names.insert(group.name.as_str()) {
                return Err((
                    format!("groups[{g}].name"),
                    format!("{:?}: must be non-empty and unique", group.name),
                ));
            }
            if group.targets.is_empty() {
                return Err((
                    format!("groups[{g}].targets"),
                    "a group needs at least one member".into(),
                ));
            }
        }
        Ok(())
    }
}

fn default_ping_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_ping_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_deadping() -> Duration {
    Duration::from_secs(3)
}

/// A command hbd runs, with a time limit.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// How long it may run before it is killed and counted as failed
    /// (default 10s).
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One resource of the group.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Its name in logs and status (e.g. `vipd`).
    pub name: String,
    /// The Unix socket it serves `tandem.resource.v1` on.
    pub socket: PathBuf,
    /// How long one transition may take (default 5s).
    #[serde(default = "default_resource_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_resource_timeout() -> Duration {
    Duration::from_secs(5)
}

impl DaemonConfig for HbdConfig {
    fn settings(&self) -> &DaemonSettings {
        &self.daemon
    }

    fn settings_mut(&mut self) -> &mut DaemonSettings {
        &mut self.daemon
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, why: String| ConfigError::invalid(origin, field, why);
        if self.cluster.is_empty() || self.cluster.len() > 64 {
            return Err(invalid("cluster", "must be 1 to 64 characters".into()));
        }
        if self.nodes.is_empty() {
            return Err(invalid(
                "nodes",
                "must list every node, this one included".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.is_empty() || node.name.len() > 64 {
                return Err(invalid(
                    &format!("nodes[{i}].name"),
                    "must be 1 to 64 characters".into(),
                ));
            }
            if !names.insert(node.name.as_str()) {
                return Err(invalid(
                    &format!("nodes[{i}].name"),
                    format!("{} is listed twice", node.name),
                ));
            }
        }
        if !names.contains(self.node.as_str()) {
            return Err(invalid(
                "node",
                format!("{:?} is not one of `nodes`", self.node),
            ));
        }
        if let Some(preferred) = &self.preferred
            && !names.contains(preferred.as_str())
        {
            return Err(invalid(
                "preferred",
                format!("{preferred:?} is not one of `nodes`"),
            ));
        }
        if self.auto_failback && self.preferred.is_none() {
            return Err(invalid(
                "preferred",
                "auto_failback needs a preferred node to fail back to".into(),
            ));
        }
        self.timers
            .validate()
            .map_err(|(field, why)| invalid(&format!("timers.{field}"), why))?;
        self.validate_links()
            .map_err(|(field, why)| invalid(&format!("links.{field}"), why))?;
        if let Some(ping) = &self.ping {
            ping.validate()
                .map_err(|(field, why)| invalid(&format!("ping.{field}"), why))?;
        }
        for (field, spec) in [("fence", &self.fence), ("notify", &self.notify)] {
            if let Some(spec) = spec
                && spec.command.first().is_none_or(String::is_empty)
            {
                return Err(invalid(
                    &format!("{field}.command"),
                    "must name a program".into(),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, res) in self.resources.iter().enumerate() {
            if res.name.is_empty() {
                return Err(invalid(
                    &format!("resources[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if !seen.insert(res.name.as_str()) {
                return Err(invalid(
                    &format!("resources[{i}].name"),
                    format!("{} is listed twice", res.name),
                ));
            }
            if res.timeout < Duration::from_millis(1) {
                return Err(invalid(
                    &format!("resources[{i}].timeout"),
                    "must be at least 1ms".into(),
                ));
            }
        }
        if self.failure_hold < self.timers.keepalive * 2 {
            return Err(invalid(
                "failure_hold",
                "must be at least two keepalives, so the peer hears of the failure before a retry"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl HbdConfig {
    /// The fields that differ from `other` and need a restart to change
    /// (everything but the key file's contents and the `daemon` section,
    /// which the plumbing reports itself).
    pub fn restart_fields(&self, other: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        check("cluster", self.cluster != other.cluster);
        check("node", self.node != other.node);
        check("nodes", self.nodes != other.nodes);
        check("key_file", self.key_file != other.key_file);
        check("timers", self.timers != other.timers);
        check("links", self.links != other.links);
        check("auto_failback", self.auto_failback != other.auto_failback);
        check("preferred", self.preferred != other.preferred);
        check("ping", self.ping != other.ping);
        check("fence", self.fence != other.fence);
        check("notify", self.notify != other.notify);
        check("resources", self.resources != other.resources);
        check("failure_hold", self.failure_hold != other.failure_hold);
        changed
    }

    /// This node's priority.
    pub fn own_priority(&self) -> u32 {
        self.nodes
            .iter()
            .find(|n| n.name == self.node)
            .map_or_else(default_priority, |n| n.priority)
    }

    fn validate_links(&self) -> Result<(), (String, String)> {
        let links = &self.links;
        if links.ucast.is_empty()
            && links.mcast.is_empty()
            && links.bcast.is_empty()
            && links.serial.is_empty()
        {
            return Err(("ucast".into(), "at least one link is needed".into()));
        }
        let interfaces = links
            .ucast
            .iter()
            .map(|l| ("ucast", &l.interface))
            .chain(links.mcast.iter().map(|l| ("mcast", &l.interface)))
            .chain(links.bcast.iter().map(|l| ("bcast", &l.interface)));
        for (i, (kind, name)) in interfaces.enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err((
                    format!("{kind}[{i}].interface"),
                    format!("{name:?} is not an interface name"),
                ));
            }
        }
        for (i, link) in links.mcast.iter().enumerate() {
            if !link.group.is_multicast() {
                return Err((
                    format!("mcast[{i}].group"),
                    format!("{} is not multicast", link.group),
                ));
            }
            if !(1..=255).contains(&link.ttl) {
                return Err((format!("mcast[{i}].ttl"), "must be 1 to 255".into()));
            }
        }
        for (i, link) in links.ucast.iter().enumerate() {
            if link.peer.is_unspecified() || link.peer.is_multicast() {
                return Err((
                    format!("ucast[{i}].peer"),
                    format!("{} is not a unicast address", link.peer),
                ));
            }
        }
        for (i, link) in links.serial.iter().enumerate() {
            let interval = crate::serial::send_interval(link.baud, self.timers.keepalive);
            if interval * 3 > self.timers.deadtime {
                return Err((
                    format!("serial[{i}].baud"),
                    format!(
                        "at {} baud a heartbeat goes out at most every {}; deadtime must be at least three of those",
                        link.baud,
                        humantime::format_duration(interval)
                    ),
                ));
            }
        }
        if links.udp_port == 0 {
            return Err(("udp_port".into(), "must not be 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "cluster: lvs\nnode: a\nnodes:\n  - name: a\n  - name: b\n    priority: 90\nlinks:\n  ucast:\n    - interface: eth0\n      peer: 198.51.100.12\n";

    fn check(yaml: &str) -> Result<HbdConfig, String> {
        let config: HbdConfig =
            tandem_daemon::config::parse(Path::new("hbd.yaml"), yaml).map_err(|e| e.to_string())?;
        config.validate("hbd.yaml").map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_seed_example_and_a_minimal_config_pass() {
        let seed = include_str!("../../../deploy/config/hbd.yaml");
        let config = check(seed).expect("the seed's config");
        assert_eq!(config.timers.deadtime, Duration::from_secs(30));
        assert_eq!(config.resources.len(), 3);
        let ping = config.ping.expect("the seed's ping_group");
        assert_eq!(
            (ping.groups[0].name.as_str(), ping.groups[0].targets.len()),
            ("group1", 2)
        );
        let minimal = check(BASE).expect("minimal");
        assert_eq!(minimal.own_priority(), 100);
        assert_eq!(minimal.links.udp_port, 694);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (BASE.replace("node: a\n", "node: c\n"), "`node`"),
            (
                BASE.replace("  - name: b\n", "  - name: a\n"),
                "nodes[1].name",
            ),
            (format!("{BASE}auto_failback: true\n"), "`preferred`"),
            (format!("{BASE}preferred: z\n"), "`preferred`"),
            (
                format!("{BASE}timers:\n  keepalive: 100ms\n  deadtime: 150ms\n"),
                "timers.deadtime",
            ),
            (
                format!("{BASE}timers:\n  warntime: 1ms\n"),
                "timers.warntime",
            ),
            (
                BASE.replace("peer: 198.51.100.12", "peer: 0.0.0.0"),
                "links.ucast[0].peer",
            ),
            (
                format!("{BASE}  mcast:\n    - interface: eth0\n      group: 198.51.100.1\n"),
                "links.mcast[0].group",
            ),
            (
                format!("{BASE}  serial:\n    - device: /dev/ttyS0\n      baud: 9600\n"),
                "links.serial[0].baud",
            ),
            (format!("{BASE}fence:\n  command: []\n"), "fence.command"),
            (format!("{BASE}ping: {{}}\n"), "ping.targets"),
            (
                format!("{BASE}ping:\n  targets: [198.51.100.1]\n  timeout: 2s\n"),
                "ping.timeout",
            ),
            (
                format!("{BASE}ping:\n  targets: [198.51.100.1]\n  deadping: 500ms\n"),
                "ping.deadping",
            ),
            (
                format!("{BASE}ping:\n  targets: [198.51.100.1, 224.0.0.1]\n"),
                "ping.targets[1]",
            ),
            (
                format!(
                    "{BASE}ping:\n  groups:\n    - name: r\n      targets: [198.51.100.1]\n    - name: r\n      targets: [198.51.100.2]\n"
                ),
                "ping.groups[1].name",
            ),
            (
                format!("{BASE}ping:\n  groups:\n    - name: r\n      targets: []\n"),
                "ping.groups[0].targets",
            ),
            (
                format!(
                    "{BASE}resources:\n  - name: v\n    socket: /a\n  - name: v\n    socket: /b\n"
                ),
                "resources[1].name",
            ),
            (BASE.replace("cluster: lvs\n", ""), "`cluster`"),
        ];
        for (yaml, field) in cases {
            let err = check(&yaml).expect_err(&yaml);
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn ping_targets_and_groups() {
        let yaml = format!(
            "{BASE}ping:\n  targets: [198.51.100.1]\n  groups:\n    - name: routers\n      targets: [203.0.113.1, 203.0.113.2]\n"
        );
        let ping = check(&yaml).expect("ping").ping.expect("ping settings");
        assert_eq!(ping.targets.len(), 1);
        assert_eq!(ping.groups[0].targets.len(), 2);
        assert_eq!(ping.interval, Duration::from_secs(1));
        assert_eq!(ping.deadping, Duration::from_secs(3));
    }

    #[test]
    fn only_keys_may_change_on_reload() {
        let a = check(BASE).expect("base");
        let mut b = a.clone();
        assert!(a.restart_fields(&b).is_empty());
        b.timers.keepalive = Duration::from_millis(50);
        b.auto_failback = true;
        assert_eq!(a.restart_fields(&b), ["timers", "auto_failback"]);
    }
}
