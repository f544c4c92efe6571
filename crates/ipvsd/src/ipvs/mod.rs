//! The kernel's IPVS table over generic netlink, written from
//! `include/uapi/linux/ip_vs.h`, in three layers:
//!
//! - [`types`]: the domain model (services, real servers, counters);
//! - [`codec`]: requests and replies as netlink messages — pure, no I/O,
//!   tested against golden bytes derived from the ABI;
//! - [`exchange`]: matching replies to requests (acks, errors, multi-part
//!   dumps) as a sans-IO state machine;
//! - [`client`]: the socket, with verbs named like `ipvsadm`'s options, and
//!   pipelining: many requests per `sendmsg`, acks collected afterwards.
//!
//! It never decides what the table should hold: that is the reconciler's job.

pub mod abi;
pub mod client;
pub mod codec;
pub mod exchange;
pub mod types;
