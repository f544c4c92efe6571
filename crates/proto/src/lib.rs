//! Generated Rust for tandem's protobuf contracts, one module per versioned
//! package under `proto/`. This crate holds generated code and the encoded
//! descriptor set only: no logic lives here.

#![allow(missing_docs, clippy::all, clippy::unwrap_used)]

/// The encoded `FileDescriptorSet` of every package, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tandem_descriptor.bin"));

/// `tandem.resource.v1`: the resource-ordering contract.
pub mod resource {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tandem.resource.v1.rs"));
    }
}

/// `tandem.ipvs.v1`: ipvsd's service-table API.
pub mod ipvs {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tandem.ipvs.v1.rs"));
    }
}

/// `tandem.check.v1`: checkd's probe API.
pub mod check {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tandem.check.v1.rs"));
    }
}

/// `tandem.vip.v1`: vipd's address API.
pub mod vip {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tandem.vip.v1.rs"));
    }
}

/// `tandem.hb.v1`: hbd's membership API and heartbeat wire format.
pub mod hb {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tandem.hb.v1.rs"));
    }
}
