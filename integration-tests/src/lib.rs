//! Harness for tandem's test tiers that need more than a unit test: network
//! namespace topologies on the host kernel (tier 2, [`netns`]), the
//! workspace's binaries as real processes ([`process`]), and a qemu VM
//! running a Debian kernel with IPVS (tier 3, [`vm`]). Everything it builds
//! is torn down on drop, panics included. It never touches the host's own
//! links.

pub mod netns;
pub mod pki;
pub mod process;
pub mod vm;
