//! A whole IPVS table as a value: services by key, each with its real
//! servers by address and port. The desired table (from config, health and
//! operator state) and the kernel's table (read back) are both `Table`s, so
//! reconciling is comparing two values.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ipvs::types::{Dest, Service, ServiceKey};

/// A real server's identity within its service.
pub type DestKey = (IpAddr, u16);

/// One virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service's settings.
    pub service: Service,
    /// Its real servers.
    pub dests: BTreeMap<DestKey, Dest>,
}

impl ServiceSpec {
    /// A service with no real servers yet.
    pub fn new(service: Service) -> Self {
        Self {
            service,
            dests: BTreeMap::new(),
        }
    }

    /// Adds or replaces a real server.
    pub fn with(mut self, dest: Dest) -> Self {
        self.dests.insert((dest.addr, dest.port), dest);
        self
    }
}

/// A whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Services by key.
    pub services: BTreeMap<ServiceKey, ServiceSpec>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a service (with its real servers).
    pub fn insert(&mut self, spec: ServiceSpec) {
        self.services.insert(spec.service.key, spec);
    }

    /// Number of real servers over all services.
    pub fn dest_count(&self) -> usize {
        self.services.values().map(|s| s.dests.len()).sum()
    }
}
