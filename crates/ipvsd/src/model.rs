//! The desired table as ipvsd holds it at run time: the virtual services
//! (from the config file, then changed over gRPC) and each real's run-time
//! state (health from checkd, operator drain). Every edit validates the
//! result whole; the owner edits a copy and keeps it only once the data
//! plane has taken it, so a refused change leaves nothing behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{RealServer, VirtualService, validate_services};
use crate::effective::{Drain, Health, RealId, RealState, desired_table};
use crate::field::FieldError;
use crate::ipvs::types::ServiceKey;
use crate::probe_mark::{MarkError, MarkRange, ProbeMarks};
use crate::store::Stored;
use crate::table::Table;

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The result would be invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// What the edit names does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// Selects reals by address, optionally narrowed by port and service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The reals' address.
    pub address: IpAddr,
    /// Only this port.
    pub port: Option<u16>,
    /// Only in this service.
    pub service: Option<ServiceKey>,
}

/// The services and the reals' run-time state.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Shared with published snapshots; copied on write.
    services: Arc<Vec<VirtualService>>,
    states: HashMap<RealId, RealState>,
    marks: ProbeMarks,
    version: u64,
}

impl Model {
    /// A model of `services` (already validated), version 1, probe marks
    /// handed out from `range`.
    pub fn new(services: Vec<VirtualService>, range: MarkRange) -> Result<Self, MarkError> {
        let mut marks = ProbeMarks::new(range);
        marks.assign(&services)?;
        Ok(Self {
            services: Arc::new(services),
            states: HashMap::new(),
            marks,
            version: 1,
        })
    }

    /// A model restored from a state file: its services, and its drained
    /// reals drained (a drain in progress resumes as finished).
    pub fn restored(stored: Stored, range: MarkRange) -> Result<Self, MarkError> {
        let mut model = Self::new(stored.services, range)?;
        for id in stored.drained {
            model.set_drain(id, Drain::Drained { timed_out: false });
        }
        model.version += 1;
        model.forget_removed();
        Ok(model)
    }

    /// The reals drained or being drained.
    pub fn drained(&self) -> Vec<RealId> {
        let mut ids: Vec<RealId> = self
            .states
            .iter()
            .filter(|(_, s)| s.drain.is_drained())
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// The services, in order.
    pub fn services(&self) -> &[VirtualService] {
        &self.services
    }

    /// The services, shared (for snapshots).
    pub fn shared_services(&self) -> Arc<Vec<VirtualService>> {
        Arc::clone(&self.services)
    }

    /// Grows on every change to the services (not on health or drain).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A real's run-time state (default when never reported or drained).
    pub fn state(&self, id: &RealId) -> RealState {
        self.states.get(id).cloned().unwrap_or_default()
    }

    /// The table the data plane should hold: the services with their
    /// effective weights, and the probe services of `through_vip` reals.
    pub fn desired(&self) -> Table {
        let mut table = desired_table(&self.services, &self.states);
        self.marks.add_probe_services(&self.services, &mut table);
        table
    }

    /// The probe marks of the `through_vip` reals.
    pub fn probe_marks(&self) -> &ProbeMarks {
        &self.marks
    }

    /// Takes over the marks of the probe services in `kernel` (read at
    /// start) so adoption moves no probe service; true when a real's mark
    /// changed (a new version).
    pub fn adopt_probe_marks(&mut self, kernel: &Table) -> bool {
        let changed = self.marks.adopt(&self.services, kernel);
        if changed {
            self.version += 1;
        }
        changed
    }

    /// Every real's id, service by service.
    pub fn real_ids(&self) -> impl Iterator<Item = RealId> + '_ {
        self.services.iter().flat_map(|vs| {
            let key = vs.key();
            vs.reals
                .iter()
                .filter_map(move |r| key.map(|k| (k, r.address, vs.real_port(r))))
        })
    }

    fn index_of(&self, key: ServiceKey) -> Result<usize, ModelError> {
        self.services
            .iter()
            .position(|vs| vs.key() == Some(key))
            .ok_or_else(|| ModelError::NotFound(format!("service: there is no {key}")))
    }

    /// The service with `key`.
    pub fn service(&self, key: ServiceKey) -> Result<&VirtualService, ModelError> {
        Ok(&self.services[self.index_of(key)?])
    }

    /// Adds `vs`, or replaces the service with its key.
    pub fn put_service(&mut self, vs: VirtualService) -> Result<(), ModelError> {
        vs.validate().map_err(|e| e.within("service"))?;
        let key = vs.key().ok_or_else(|| {
            FieldError::new("service.address", "give address and port, or fwmark")
        })?;
        let index = self.index_of(key);
        let services = Arc::make_mut(&mut self.services);
        match index {
            Ok(i) => services[i] = vs,
            Err(_) => services.push(vs),
        }
        self.changed(|e| match e {
            MarkError::Reserved { .. } => "service.fwmark".into(),
            MarkError::Exhausted { .. } => "service.check.through_vip".into(),
        })
    }

    /// Removes the service with `key`.
    pub fn delete_service(&mut self, key: ServiceKey) -> Result<(), ModelError> {
        let i = self.index_of(key)?;
        Arc::make_mut(&mut self.services).remove(i);
        self.changed(|_| "service".into())
    }

    /// Adds `real` to the service with `key`, or replaces the real with its
    /// address and port.
    pub fn put_real(&mut self, key: ServiceKey, real: RealServer) -> Result<(), ModelError> {
        let i = self.index_of(key)?;
        let mut vs = self.services[i].clone();
        let port = vs.real_port(&real);
        let existing = vs
            .reals
            .iter()
            .position(|r| r.address == real.address && vs.real_port(r) == port);
        let j = match existing {
            Some(j) => {
                vs.reals[j] = real;
                j
            }
            None => {
                vs.reals.push(real);
                vs.reals.len() - 1
            }
        };
        let own = format!("reals[{j}]");
        vs.validate()
            .map_err(|e| match e.field.strip_prefix(&own) {
                Some(rest) => FieldError::new(format!("real{rest}"), e.message),
                None => e.within("service"),
            })?;
        Arc::make_mut(&mut self.services)[i] = vs;
        self.changed(|_| "real.check.through_vip".into())
    }

    /// Removes the real `address`:`port` (default the service's port).
    pub fn delete_real(
        &mut self,
        key: ServiceKey,
        address: IpAddr,
        port: Option<u16>,
    ) -> Result<(), ModelError> {
        let i = self.index_of(key)?;
        let vs = &mut Arc::make_mut(&mut self.services)[i];
        let port = port.or(vs.port).unwrap_or(0);
        let before = vs.reals.len();
        let reals = std::mem::take(&mut vs.reals);
        vs.reals = reals
            .into_iter()
            .filter(|r| !(r.address == address && vs.real_port(r) == port))
            .collect();
        if vs.reals.len() == before {
            return Err(ModelError::NotFound(format!(
                "real: {key} has no real {address}:{port}"
            )));
        }
        self.changed(|_| "real".into())
    }

    /// Replaces every service.
    pub fn replace(&mut self, services: Vec<VirtualService>) -> Result<(), ModelError> {
        validate_services(&services)
            .map_err(|e| FieldError::new(format!("services{}", e.field), e.message))?;
        self.services = Arc::new(services);
        self.changed(|e| match e {
            MarkError::Reserved { service, .. } => format!("services[{service}].fwmark"),
            MarkError::Exhausted { .. } => "services".into(),
        })
    }

    /// Records checkd's verdict on a real. `Ok(true)` when its health
    /// changed; an error when the table has no such real.
    pub fn set_health(
        &mut self,
        id: RealId,
        health: Health,
        detail: String,
    ) -> Result<bool, ModelError> {
        let (key, address, port) = id;
        // A real with state is in the table (state goes with its real);
        // otherwise look in its service alone: checkd reports every real.
        let present = self.states.contains_key(&id)
            || self.index_of(key).is_ok_and(|i| {
                let vs = &self.services[i];
                vs.reals
                    .iter()
                    .any(|r| r.address == address && vs.real_port(r) == port)
            });
        if !present {
            return Err(ModelError::NotFound(format!("{key} {address}:{port}")));
        }
        let state = self.states.entry(id).or_default();
        let changed = state.health != health;
        state.health = health;
        state.detail = if health == Health::Down {
            detail
        } else {
            String::new()
        };
        Ok(changed)
    }

    /// The reals `selector` names; an error when it names none.
    pub fn select(&self, selector: &Selector) -> Result<Vec<RealId>, ModelError> {
        let ids: Vec<RealId> = self
            .real_ids()
            .filter(|(key, address, port)| {
                *address == selector.address
                    && selector.port.is_none_or(|p| p == *port)
                    && selector.service.is_none_or(|k| k == *key)
            })
            .collect();
        if ids.is_empty() {
            let port = selector.port.map(|p| format!(":{p}")).unwrap_or_default();
            let scope = selector
                .service
                .map_or_else(|| "any service".into(), |k| k.to_string());
            return Err(ModelError::NotFound(format!(
                "reals: no real {}{port} in {scope}",
                selector.address
            )));
        }
        Ok(ids)
    }

    /// Sets a real's drain state.
    pub fn set_drain(&mut self, id: RealId, drain: Drain) {
        self.states.entry(id).or_default().drain = drain;
    }

    /// A structural change: new version, probe marks brought in line, and
    /// run-time state of reals no longer in the table forgotten. Fails, with
    /// the field `blame` names, when the marks cannot be handed out.
    fn changed(&mut self, blame: impl FnOnce(&MarkError) -> String) -> Result<(), ModelError> {
        self.marks
            .assign(&self.services)
            .map_err(|e| FieldError::new(blame(&e), e.to_string()))?;
        self.version += 1;
        self.forget_removed();
        Ok(())
    }

    fn forget_removed(&mut self) {
        let present: std::collections::HashSet<RealId> = self.real_ids().collect();
        self.states.retain(|id, _| present.contains(id));
    }
}

#[cfg(test)]
mod tests;
