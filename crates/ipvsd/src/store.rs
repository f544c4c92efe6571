//! The state file: the table as changed over the API and the operator's
//! drains, written after every change (to a temporary file, synced, then
//! renamed over the old one), so a restarted ipvsd serves what was served
//! instead of reverting to its config file. The file records the config
//! services it grew from; when the config file says something else now, the
//! config file was edited since and wins.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use prost::Message as _;
use tandem_proto::ipvs::v1 as pb;

use crate::api::convert;
use crate::config::{VirtualService, validate_services};
use crate::effective::RealId;

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a table ipvsd wrote, or holds an invalid one.
    #[error("{path}: {message}; move it away to start from the config file")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a state file restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The services.
    pub services: Vec<VirtualService>,
    /// The reals drained by an operator.
    pub drained: Vec<RealId>,
}

/// The state file and the config services it is based on.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    base: pb::ServiceList,
}

fn wire(services: &[VirtualService]) -> pb::ServiceList {
    pb::ServiceList {
        services: services
            .iter()
            .map(convert::virtual_service_to_wire)
            .collect(),
    }
}

impl Store {
    /// The state file at `path`, for a config file holding `services`.
    pub fn new(path: &Path, services: &[VirtualService]) -> Self {
        Self {
            path: path.to_owned(),
            base: wire(services),
        }
    }

    /// The config file's services changed (SIGHUP): later saves are based
    /// on `services`.
    pub fn rebase(&mut self, services: &[VirtualService]) {
        self.base = wire(services);
    }

    /// What the file restores: `None` when there is no file, or when it
    /// grew from other config services than the config file's now.
    pub fn load(&self) -> Result<Option<Stored>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            message,
        };
        let stored = pb::StoredTable::decode(bytes.as_slice())
            .map_err(|e| corrupt(format!("not a table ipvsd wrote ({e})")))?;
        if stored.base.unwrap_or_default() != self.base {
            tracing::info!(
                file = %self.path.display(),
                "the config file's virtual services changed since the state file was written; the config file wins"
            );
            return Ok(None);
        }
        let services = stored
            .table
            .unwrap_or_default()
            .services
            .iter()
            .enumerate()
            .map(|(i, vs)| {
                convert::virtual_service(vs).map_err(|e| e.within(&format!("table[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        validate_services(&services).map_err(|e| corrupt(format!("table{}", e.field)))?;
        let drained = stored
            .drained
            .iter()
            .filter_map(|s| {
                let key = convert::service_key(s.service.as_ref()?).ok()?;
                Some((key, s.address.parse().ok()?, u16::try_from(s.port?).ok()?))
            })
            .collect();
        Ok(Some(Stored { services, drained }))
    }

    /// Writes `services` and `drained` in place of the file, atomically.
    pub fn save(&self, services: &[VirtualService], drained: &[RealId]) -> Result<(), StoreError> {
        let stored = pb::StoredTable {
            base: Some(self.base.clone()),
            table: Some(wire(services)),
            drained: drained
                .iter()
                .map(|&(key, address, port)| pb::RealSelector {
                    address: address.to_string(),
                    port: Some(port.into()),
                    service: Some(convert::service_key_to_wire(key)),
                })
                .collect(),
        };
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        temp.write_all(&stored.encode_to_vec()).map_err(io)?;
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
