//! The one narrow seam between ipvsd's logic and a data plane: read the
//! table, apply operations. Kernel IPVS over netlink is the real backend;
//! [`RecordingBackend`] is the fake the logic is unit-tested against. An
//! nftables or eBPF data plane would be another implementation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::effective::RealId;
use crate::ipvs::client::{ClientError, IpvsClient};
use crate::ipvs::codec::{self, EncodeError};
use crate::ipvs::types::{ServiceKey, Stats, SyncDaemon, SyncRole};
use crate::owner::{Connect, SyncControl};
use crate::plan::{Op, apply_to};
use crate::table::{ServiceSpec, Table};

/// A data plane failure (not a refused operation: those are per-op results).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The kernel IPVS client failed.
    #[error(transparent)]
    Ipvs(#[from] ClientError),
    /// An operation could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A real's live connection counts and traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealCounters {
    /// Active connections.
    pub active: u32,
    /// Inactive connections.
    pub inactive: u32,
    /// Persistence templates.
    pub persistent: u32,
    /// Traffic.
    pub stats: Stats,
}

/// Live counters of the whole table (read with it: [`Backend::read_live`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per service.
    pub services: HashMap<ServiceKey, Stats>,
    /// Per real.
    pub reals: HashMap<RealId, RealCounters>,
}

impl Counters {
    /// Connections known, summed over the reals (active + inactive).
    pub fn connections(&self) -> u64 {
        self.reals
            .values()
            .map(|r| u64::from(r.active) + u64::from(r.inactive))
            .sum()
    }
}

/// What ipvsd needs from a data plane.
pub trait Backend: Send {
    /// The table as the data plane has it now.
    fn read(&mut self) -> impl Future<Output = Result<Table, BackendError>> + Send;
    /// The table and its live counters, from one read.
    fn read_live(&mut self)
    -> impl Future<Output = Result<(Table, Counters), BackendError>> + Send;
    /// Applies `ops` in order; one result per op (a refused op does not stop the rest).
    fn apply(
        &mut self,
        ops: &[Op],
    ) -> impl Future<Output = Result<Vec<Result<(), String>>, BackendError>> + Send;
}

/// The kernel's IPVS table over generic netlink.
pub struct KernelBackend {
    client: IpvsClient,
    /// The sync daemon's interface and id, when syncing.
    sync: Option<(String, u8)>,
}

impl KernelBackend {
    /// Connects to the kernel's IPVS.
    pub async fn connect() -> Result<Self, BackendError> {
        Ok(Self {
            client: IpvsClient::connect().await?,
            sync: None,
        })
    }
}

fn request(op: &Op) -> Result<codec::Request, EncodeError> {
    match op {
        Op::AddService(s) => codec::new_service(s),
        Op::EditService(s) => codec::set_service(s),
        Op::DeleteService(k) => codec::del_service(k),
        Op::AddDest(k, d) => codec::new_dest(k, d),
        Op::EditDest(k, d) => codec::set_dest(k, d),
        Op::DeleteDest(k, a, p) => codec::del_dest(k, a, *p),
    }
}

impl Backend for KernelBackend {
    async fn read(&mut self) -> Result<Table, BackendError> {
        Ok(self.read_live().await?.0)
    }

    async fn read_live(&mut self) -> Result<(Table, Counters), BackendError> {
        let mut table = Table::new();
        let mut counters = Counters::default();
        for (entry, dests) in self.client.table().await? {
            let key = entry.service.key;
            counters.services.insert(key, entry.stats);
            let mut spec = ServiceSpec::new(entry.service);
            for d in dests {
                counters.reals.insert(
                    (key, d.dest.addr, d.dest.port),
                    RealCounters {
                        active: d.active_conns,
                        inactive: d.inact_conns,
                        persistent: d.persist_conns,
                        stats: d.stats,
                    },
                );
                spec = spec.with(d.dest);
            }
            table.insert(spec);
        }
        Ok((table, counters))
    }

    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Result<(), String>>, BackendError> {
        let requests = ops.iter().map(request).collect::<Result<Vec<_>, _>>()?;
        let outcomes = self.client.execute(requests).await?;
        Ok(ops
            .iter()
            .zip(outcomes)
            .map(|(op, outcome)| outcome.map(drop).map_err(|e| format!("{op}: {e}")))
            .collect())
    }
}

/// Connects the kernel backend.
#[derive(Clone, Debug)]
pub struct KernelConnect {
    /// The sync daemon's interface and id, when syncing.
    pub sync: Option<(String, u8)>,
}

impl Connect for KernelConnect {
    type Backend = KernelBackend;

    async fn connect(&self) -> Result<KernelBackend, BackendError> {
        let mut backend = KernelBackend::connect().await?;
        backend.sync = self.sync.clone();
        Ok(backend)
    }
}

impl SyncControl for KernelBackend {
    async fn sync_role(&mut self) -> Result<Option<bool>, BackendError> {
        let running = self.client.daemons().await?;
        Ok(running.first().map(|d| d.role == SyncRole::Master))
    }

    async fn set_sync(&mut self, role: Option<bool>) -> Result<(), BackendError> {
        let running = self.client.daemons().await?;
        let want = role.map(|master| {
            if master {
                SyncRole::Master
            } else {
                SyncRole::Backup
            }
        });
        for daemon in &running {
            if Some(daemon.role) != want {
                self.client.stop_daemon(daemon.role).await?;
            }
        }
        let (Some(role), Some((ifname, sync_id))) = (want, &self.sync) else {
            return Ok(());
        };
        if running.iter().any(|d| d.role == role) {
            return Ok(());
        }
        let daemon = SyncDaemon {
            role,
            ifname: ifname.clone(),
            sync_id: u32::from(*sync_id),
            max_len: None,
            group: None,
            port: None,
            ttl: None,
        };
        Ok(self.client.start_daemon(&daemon).await?)
    }
}

/// A fake data plane: a table in memory that records every op applied, and
/// refuses the ops a test chooses (by position in the overall sequence).
#[derive(Debug, Default)]
pub struct RecordingBackend {
    /// The table as the fake data plane has it.
    pub table: Table,
    /// Every op applied successfully, in order.
    pub applied: Vec<Op>,
    /// Positions (0-based, over all ops ever given) to refuse.
    pub refuse: Vec<usize>,
    /// The sync role last set: `Some(true)` master, `Some(false)` backup.
    pub sync: Option<bool>,
    /// Active connections per real, as the test sets them.
    pub conns: HashMap<RealId, u32>,
    seen: usize,
}

impl RecordingBackend {
    /// A fake holding `table`.
    pub fn with(table: Table) -> Self {
        Self {
            table,
            ..Self::default()
        }
    }
}

impl SyncControl for RecordingBackend {
    async fn sync_role(&mut self) -> Result<Option<bool>, BackendError> {
        Ok(self.sync)
    }

    async fn set_sync(&mut self, role: Option<bool>) -> Result<(), BackendError> {
        self.sync = role;
        Ok(())
    }
}

impl Backend for RecordingBackend {
    async fn read(&mut self) -> Result<Table, BackendError> {
        Ok(self.table.clone())
    }

    async fn read_live(&mut self) -> Result<(Table, Counters), BackendError> {
        let mut counters = Counters::default();
        for (key, spec) in &self.table.services {
            counters.services.insert(*key, Stats::default());
            for &(addr, port) in spec.dests.keys() {
                let id = (*key, addr, port);
                let active = self.conns.get(&id).copied().unwrap_or(0);
                counters.reals.insert(
                    id,
                    RealCounters {
                        active,
                        ..RealCounters::default()
                    },
                );
            }
        }
        Ok((self.table.clone(), counters))
    }

    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Result<(), String>>, BackendError> {
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let position = self.seen;
            self.seen += 1;
            if self.refuse.contains(&position) || !apply_to(&mut self.table, op) {
                results.push(Err(format!("{op}: refused")));
            } else {
                self.applied.push(op.clone());
                results.push(Ok(()));
            }
        }
        Ok(results)
    }
}

/// A [`RecordingBackend`] behind a shared lock, so a test can look at the
/// fake while an owner holds it; it connects to itself.
#[derive(Clone, Debug, Default)]
pub struct SharedRecording(pub Arc<tokio::sync::Mutex<RecordingBackend>>);

impl Backend for SharedRecording {
    async fn read(&mut self) -> Result<Table, BackendError> {
        self.0.lock().await.read().await
    }

    async fn read_live(&mut self) -> Result<(Table, Counters), BackendError> {
        self.0.lock().await.read_live().await
    }

    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Result<(), String>>, BackendError> {
        self.0.lock().await.apply(ops).await
    }
}

impl SyncControl for SharedRecording {
    async fn sync_role(&mut self) -> Result<Option<bool>, BackendError> {
        self.0.lock().await.sync_role().await
    }

    async fn set_sync(&mut self, role: Option<bool>) -> Result<(), BackendError> {
        self.0.lock().await.set_sync(role).await
    }
}

impl Connect for SharedRecording {
    type Backend = Self;

    async fn connect(&self) -> Result<Self, BackendError> {
        Ok(self.clone())
    }
}
