//! Operator drains, ipvsadm's "weight 0 and wait" made one operation: the
//! selected reals get effective weight 0 at once; a follower task polls
//! their active connections until none are left or the timeout passes,
//! then marks them drained or, if asked, removes them from the table. The
//! drain runs in ipvsd, not in the caller: a client that goes away does
//! not stop it. Undrain gives the weight back at any point.

use std::time::Duration;

use tandem_resource::ResourceMachine;
use tokio::time::Instant;

use crate::effective::{Drain, RealId};
use crate::model::Selector;
use crate::owner::{ChangeError, Connect, Owner};

/// How often a drain looks at the connection counts.
pub const POLL: Duration = Duration::from_millis(500);

/// A drain's timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where one real of a drain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The real.
    pub id: RealId,
    /// Its drain state (for a removed real: the state it had).
    pub drain: Drain,
    /// Its active connections (0 while the table is not served).
    pub active: u32,
    /// Removed from the table.
    pub removed: bool,
}

/// Starts draining the reals `selector` names: weight 0 now. Returns the
/// drain's id and the reals.
pub async fn start<C: Connect>(
    owner: &Owner<C>,
    selector: &Selector,
) -> Result<(u64, Vec<RealId>), ChangeError> {
    let drain = owner.drain_id();
    let (_, ids) = owner
        .change(false, |m| {
            let ids = m.select(selector)?;
            for id in &ids {
                m.set_drain(*id, Drain::Draining { drain });
            }
            Ok(ids)
        })
        .await?;
    tracing::info!(drain, reals = ?ids, "drain started");
    Ok((drain, ids))
}

/// Ends any drain of the reals `selector` names: their weight comes back.
pub async fn undrain<C: Connect>(
    owner: &Owner<C>,
    selector: &Selector,
) -> Result<Vec<RealId>, ChangeError> {
    let (_, ids) = owner
        .change(false, |m| {
            let ids = m.select(selector)?;
            for id in &ids {
                m.set_drain(*id, Drain::None);
            }
            Ok(ids)
        })
        .await?;
    tracing::info!(reals = ?ids, "undrained");
    Ok(ids)
}

/// Follows drain `drain` of `ids` to its end: no active connections left,
/// or `timeout`. Reals undrained or drained again meanwhile are left alone.
/// Returns whether it ended by the timeout (`None`: every real was
/// undrained or drained again first).
pub async fn follow<C: Connect>(
    machine: ResourceMachine<Owner<C>>,
    drain: u64,
    ids: Vec<RealId>,
    timeout: Duration,
    remove: bool,
) -> Option<bool> {
    let owner = machine.hook();
    let deadline = Instant::now() + timeout;
    loop {
        let mine: Vec<RealId> = owner
            .read(|m| {
                ids.iter()
                    .filter(|id| m.state(id).drain == Drain::Draining { drain })
                    .copied()
                    .collect()
            })
            .await;
        if mine.is_empty() {
            return None;
        }
        let busy = match owner.counters().await {
            Ok(Some(c)) => mine
                .iter()
                .filter(|id| c.reals.get(id).is_some_and(|r| r.active > 0))
                .count(),
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(drain, error = %e, "cannot read connection counts");
                mine.len()
            }
        };
        let now = Instant::now();
        if busy == 0 || now >= deadline {
            finish(owner, drain, &mine, busy > 0, remove).await;
            return Some(busy > 0);
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

async fn finish<C: Connect>(
    owner: &Owner<C>,
    drain: u64,
    ids: &[RealId],
    timed_out: bool,
    remove: bool,
) {
    if remove {
        let removed = owner
            .change(false, |m| {
                for &(key, address, port) in ids {
                    if m.state(&(key, address, port)).drain == (Drain::Draining { drain }) {
                        m.delete_real(key, address, Some(port))?;
                    }
                }
                Ok(())
            })
            .await;
        match removed {
            Ok(_) => {
                tracing::info!(drain, reals = ?ids, timed_out, "drained and removed");
                return;
            }
            Err(e) => {
                tracing::error!(drain, error = %e, "could not remove drained reals; they stay drained")
            }
        }
    }
    owner
        .observe(|m| {
            for id in ids {
                if m.state(id).drain == (Drain::Draining { drain }) {
                    m.set_drain(*id, Drain::Drained { timed_out });
                }
            }
        })
        .await;
    tracing::info!(drain, reals = ?ids, timed_out, "drained");
}

/// Where each of `ids` stands now.
pub async fn progress<C: Connect>(owner: &Owner<C>, ids: &[RealId]) -> Vec<Progress> {
    let counters = owner.counters().await.ok().flatten();
    owner
        .read(|m| {
            let present: std::collections::HashSet<RealId> = m.real_ids().collect();
            ids.iter()
                .map(|id| Progress {
                    id: *id,
                    drain: m.state(id).drain,
                    active: counters
                        .as_ref()
                        .and_then(|c| c.reals.get(id))
                        .map_or(0, |r| r.active),
                    removed: !present.contains(id),
                })
                .collect()
        })
        .await
}
