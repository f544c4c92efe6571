//! Heartbeats on the wire: a protobuf `Heartbeat` inside a
//! `SignedHeartbeat` carrying its HMAC-SHA256 tag, and the checks every
//! received datagram or serial frame passes before membership sees it:
//! tag, cluster, known sender, then freshness ([`ReplayGuard`]). Nothing
//! here does I/O.

use std::collections::BTreeMap;

use prost::Message;
use tandem_proto::hb::v1 as pb;

use crate::keys::{Keys, VerifyError};

/// The largest heartbeat accepted, in bytes (real ones are about 100).
pub const MAX_DATAGRAM: usize = 512;

/// Why a received heartbeat was dropped. Each is counted by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not a SignedHeartbeat, or too large, or its body not a Heartbeat.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Signed with a key id this node does not have.
    #[error("signed with unknown key id {0}")]
    UnknownKey(u32),
    /// The tag does not match.
    #[error("bad HMAC tag")]
    BadTag,
    /// For another cluster.
    #[error("for cluster {0:?}")]
    WrongCluster(String),
    /// From a node not in the config.
    #[error("from unknown node {0:?}")]
    UnknownNode(String),
    /// An incarnation older than one already heard from the node.
    #[error("old incarnation {got} of {node} (current {current})")]
    OldIncarnation {
        /// The sender.
        node: String,
        /// The incarnation in the heartbeat.
        got: u64,
        /// The newest heard.
        current: u64,
    },
    /// A sequence number not above the last heard on this link.
    #[error("replayed or old sequence {got} from {node} (last {last})")]
    Replayed {
        /// The sender.
        node: String,
        /// The sequence in the heartbeat.
        got: u64,
        /// The last accepted on this link.
        last: u64,
    },
}

impl Rejected {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadTag => "bad_tag",
            Self::WrongCluster(_) => "wrong_cluster",
            Self::UnknownNode(_) => "unknown_node",
            Self::OldIncarnation { .. } => "old_incarnation",
            Self::Replayed { .. } => "replayed",
        }
    }
}

/// Encodes and signs a heartbeat.
pub fn seal(keys: &Keys, heartbeat: &pb::Heartbeat) -> Vec<u8> {
    let body = heartbeat.encode_to_vec();
    let (key_id, tag) = keys.sign(&body);
    pb::SignedHeartbeat {
        key_id,
        heartbeat: body,
        tag,
    }
    .encode_to_vec()
}

/// Decodes a datagram and checks its tag and cluster. Freshness is the
/// [`ReplayGuard`]'s job.
pub fn open(keys: &Keys, cluster: &str, bytes: &[u8]) -> Result<pb::Heartbeat, Rejected> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(Rejected::Malformed(format!("{} bytes", bytes.len())));
    }
    let signed =
        pb::SignedHeartbeat::decode(bytes).map_err(|e| Rejected::Malformed(e.to_string()))?;
    keys.verify(signed.key_id, &signed.heartbeat, &signed.tag)
        .map_err(|e| match e {
            VerifyError::UnknownKey(id) => Rejected::UnknownKey(id),
            VerifyError::BadTag => Rejected::BadTag,
        })?;
    let heartbeat = pb::Heartbeat::decode(signed.heartbeat.as_slice())
        .map_err(|e| Rejected::Malformed(e.to_string()))?;
    if heartbeat.cluster != cluster {
        return Err(Rejected::WrongCluster(heartbeat.cluster));
    }
    Ok(heartbeat)
}

/// How a fresh heartbeat relates to what was already heard from its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Newer than anything heard from the node on any link: its content
    /// is news.
    New,
    /// Already heard on another link (or a slower link catching up): it
    /// proves this link works, its content is not news.
    SeenElsewhere,
}

/// Replay protection: per node, its newest incarnation and, per link, the
/// highest sequence accepted. A sender puts one sequence on each round of
/// heartbeats and sends it on every link, so each link's sequences only
/// grow; anything not above a link's last is dropped.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    nodes: BTreeMap<String, NodeWindow>,
}

#[derive(Debug, Default)]
struct NodeWindow {
    incarnation: u64,
    newest: u64,
    per_link: BTreeMap<usize, u64>,
}

impl ReplayGuard {
    /// Checks and records a heartbeat from `node` heard on `link`.
    pub fn admit(
        &mut self,
        node: &str,
        link: usize,
        incarnation: u64,
        seq: u64,
    ) -> Result<Freshness, Rejected> {
        let window = self.nodes.entry(node.to_owned()).or_default();
        if incarnation < window.incarnation {
            return Err(Rejected::OldIncarnation {
                node: node.to_owned(),
                got: incarnation,
                current: window.incarnation,
            });
        }
        if incarnation > window.incarnation {
            *window = NodeWindow {
                incarnation,
                ..NodeWindow::default()
            };
        }
        let last = window.per_link.get(&link).copied();
        if let Some(last) = last
            && seq <= last
        {
            return Err(Rejected::Replayed {
                node: node.to_owned(),
                got: seq,
                last,
            });
        }
        window.per_link.insert(link, seq);
        if seq > window.newest || (window.newest == 0 && last.is_none()) {
            window.newest = seq;
            Ok(Freshness::New)
        } else {
            Ok(Freshness::SeenElsewhere)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Keys {
        Keys::parse(&format!("auth 1\n1 sha256 {secret}\n")).expect("keys")
    }

    fn beat(cluster: &str) -> pb::Heartbeat {
        pb::Heartbeat {
            cluster: cluster.into(),
            node: "b".into(),
            incarnation: 7,
            seq: 3,
            epoch: 2,
            role: pb::Role::Active.into(),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let k = keys("secret-secret-secret");
        let bytes = seal(&k, &beat("lvs"));
        assert_eq!(open(&k, "lvs", &bytes), Ok(beat("lvs")));
        assert!(bytes.len() < 120, "{} bytes", bytes.len());
    }

    #[test]
    fn wrong_key_cluster_or_bytes_are_rejected() {
        let bytes = seal(&keys("secret-secret-secret"), &beat("lvs"));
        let other = keys("another-secret-here");
        assert_eq!(open(&other, "lvs", &bytes), Err(Rejected::BadTag));
        let k = keys("secret-secret-secret");
        assert_eq!(
            open(&k, "web", &bytes),
            Err(Rejected::WrongCluster("lvs".into()))
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 40;
        flipped[last] ^= 1;
        assert!(open(&k, "lvs", &flipped).is_err());
        assert!(matches!(
            open(&k, "lvs", b"\xff\xff\xff"),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            open(&k, "lvs", &[0u8; MAX_DATAGRAM + 1]),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn replay_guard_per_link_and_incarnation() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.admit("b", 0, 5, 1), Ok(Freshness::New));
        assert_eq!(g.admit("b", 1, 5, 1), Ok(Freshness::SeenElsewhere));
        assert_eq!(g.admit("b", 0, 5, 2), Ok(Freshness::New));
        assert!(matches!(
            g.admit("b", 0, 5, 2),
            Err(Rejected::Replayed { last: 2, .. })
        ));
        assert!(matches!(
            g.admit("b", 0, 5, 1),
            Err(Rejected::Replayed { .. })
        ));
        // A slower link catching up is not a replay.
        assert_eq!(g.admit("b", 1, 5, 2), Ok(Freshness::SeenElsewhere));
        // A restart of the sender starts over; its old packets are refused.
        assert_eq!(g.admit("b", 0, 6, 1), Ok(Freshness::New));
        assert!(matches!(
            g.admit("b", 1, 5, 9),
            Err(Rejected::OldIncarnation { current: 6, .. })
        ));
    }
}
