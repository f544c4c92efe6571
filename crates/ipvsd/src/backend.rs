//! The one narrow seam between ipvsd's logic and a data plane: read the
//! table, apply operations. Kernel IPVS over netlink is the real backend;
//! [`RecordingBackend`] is the fake the logic is unit-tested against. An
//! nftables or eBPF data plane would be another implementation.

use std::future::Future;

use crate::ipvs::client::{ClientError, IpvsClient};
use crate::ipvs::codec::{self, EncodeError};
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

/// What ipvsd needs from a data plane.
pub trait Backend: Send {
    /// The table as the data plane has it now.
    fn read(&mut self) -> impl Future<Output = Result<Table, BackendError>> + Send;
    /// Applies `ops` in order; one result per op (a refused op does not stop the rest).
    fn apply(
        &mut self,
        ops: &[Op],
    ) -> impl Future<Output = Result<Vec<Result<(), String>>, BackendError>> + Send;
}

/// The kernel's IPVS table over generic netlink.
pub struct KernelBackend {
    client: IpvsClient,
}

impl KernelBackend {
    /// Connects to the kernel's IPVS.
    pub async fn connect() -> Result<Self, BackendError> {
        Ok(Self {
            client: IpvsClient::connect().await?,
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
        let mut table = Table::new();
        for (entry, dests) in self.client.table().await? {
            let spec = dests
                .into_iter()
                .fold(ServiceSpec::new(entry.service), |spec, d| spec.with(d.dest));
            table.insert(spec);
        }
        Ok(table)
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

impl Backend for RecordingBackend {
    async fn read(&mut self) -> Result<Table, BackendError> {
        Ok(self.table.clone())
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
