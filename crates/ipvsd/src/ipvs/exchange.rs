//! Matching netlink replies to requests, without I/O: each request gets a
//! sequence number; replies carrying it are collected until the request
//! completes — with an ACK (code 0), an error (negative errno), or the
//! NLMSG_DONE that ends a multi-part dump. Many requests may be in flight.
//!
//! A request that only changes the table may be sent without an ACK
//! (`NLM_F_ACK` unset): the kernel then answers it only if it fails. Such a
//! request is complete once a later acknowledged request completes, since
//! the kernel handles a socket's requests in order — so a batch needs one
//! ACK, on its last request, instead of one per request.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;

use neli::FromBytes;
use neli::consts::nl::Nlmsg;
use neli::nl::{NlPayload, Nlmsghdr};
use neli::types::Buffer;

use super::codec::{self, DecodeError, EncodeError, Genl, Request};

/// A request the kernel refused: the errno it answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", std::io::Error::from_raw_os_error(*.errno))]
pub struct KernelError {
    /// The positive errno (e.g. 17 = EEXIST).
    pub errno: i32,
}

/// How a request ended: the replies it produced (none for a plain ack), or
/// the kernel's error.
pub type Outcome = Result<Vec<Genl>, KernelError>;

/// A request in flight: the replies so far, and its place in sending order.
#[derive(Debug)]
struct Pending {
    parts: Vec<Genl>,
    ticket: u64,
    acked: bool,
}

/// The in-flight requests of one netlink socket.
#[derive(Debug, Default)]
pub struct Exchange {
    next_seq: u32,
    next_ticket: u64,
    pending: HashMap<u32, Pending>,
    /// Requests sent without an ACK, in sending order (ticket, seq); those
    /// still pending when a later acknowledged one ends have succeeded.
    unacked: VecDeque<(u64, u32)>,
    /// The dump in flight: the kernel runs one dump per socket at a time
    /// (a second one is refused with EBUSY).
    dump: Option<u32>,
}

impl Exchange {
    /// No request in flight; sequence numbers start at 1.
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            ..Self::default()
        }
    }

    /// Whether `req` may start now: a dump waits until nothing else is in
    /// flight, and nothing starts while a dump runs.
    pub fn can_start(&self, req: &Request) -> bool {
        self.dump.is_none() && (!req.dump || self.pending.is_empty())
    }

    /// Registers `req` and appends its wire bytes to `out`; returns its
    /// sequence number. Without `ack` (honoured only for a request that
    /// answers nothing) it completes with the next acknowledged request.
    pub fn start(
        &mut self,
        req: Request,
        family_id: u16,
        ack: bool,
        out: &mut Vec<u8>,
    ) -> Result<u32, EncodeError> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let dump = req.dump;
        let acked = ack || req.answers;
        codec::write(&codec::frame(req, family_id, seq, acked)?, out)?;
        self.pending.insert(
            seq,
            Pending {
                parts: Vec::new(),
                ticket,
                acked,
            },
        );
        if !acked {
            self.unacked.push_back((ticket, seq));
        }
        if dump {
            self.dump = Some(seq);
        }
        Ok(seq)
    }

    /// Forgets every request in flight (their caller gave up on them: an
    /// error or a cancelled call). Late replies to them carry sequence
    /// numbers no request holds any more, and are ignored.
    pub fn abandon(&mut self) {
        self.pending.clear();
        self.unacked.clear();
        self.dump = None;
    }

    /// Requests still waiting for their end.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one received datagram; returns the requests it completed.
    /// Messages for unknown sequence numbers are ignored.
    pub fn receive(&mut self, datagram: &[u8]) -> Result<Vec<(u32, Outcome)>, DecodeError> {
        let mut done = Vec::new();
        let mut cursor = Cursor::new(datagram);
        while (cursor.position() as usize) < datagram.len() {
            let msg = Nlmsghdr::<u16, Buffer>::from_bytes(&mut cursor).map_err(|e| {
                DecodeError::Malformed {
                    what: "netlink message",
                    detail: e.to_string(),
                }
            })?;
            let seq = *msg.nl_seq();
            if !self.pending.contains_key(&seq) {
                continue;
            }
            let end = match msg.nl_payload() {
                NlPayload::Ack(_) => Some(Ok(())),
                NlPayload::Err(e) => Some(Err(KernelError {
                    errno: e.error().abs(),
                })),
                NlPayload::DumpExtAck(e) if *e.error() != 0 => Some(Err(KernelError {
                    errno: e.error().abs(),
                })),
                NlPayload::DumpExtAck(_) | NlPayload::Empty => Some(Ok(())),
                NlPayload::Payload(bytes) if *msg.nl_type() == u16::from(Nlmsg::Done) => {
                    let code = bytes
                        .as_ref()
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, i32::from_ne_bytes);
                    Some(if code == 0 {
                        Ok(())
                    } else {
                        Err(KernelError { errno: code.abs() })
                    })
                }
                NlPayload::Payload(bytes) => {
                    let genl = codec::parse_genl(bytes.as_ref())?;
                    if let Some(pending) = self.pending.get_mut(&seq) {
                        pending.parts.push(genl);
                    }
                    None
                }
            };
            if let Some(end) = end {
                if self.dump == Some(seq) {
                    self.dump = None;
                }
                let Some(pending) = self.pending.remove(&seq) else {
                    continue;
                };
                if pending.acked {
                    self.succeed_unacked_before(pending.ticket, &mut done);
                }
                done.push((seq, end.map(|()| pending.parts)));
            }
        }
        Ok(done)
    }

    /// Completes, as successes, the unacknowledged requests sent before
    /// `ticket` that no error has ended.
    fn succeed_unacked_before(&mut self, ticket: u64, done: &mut Vec<(u32, Outcome)>) {
        while let Some(&(t, seq)) = self.unacked.front()
            && t < ticket
        {
            self.unacked.pop_front();
            if let Some(pending) = self.pending.remove(&seq) {
                done.push((seq, Ok(pending.parts)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NLMSG_ERROR message for `seq` with `code` (0 = ACK). As the kernel
    /// does, an ACK echoes only the request's header; an error echoes the
    /// whole request (here a 4-byte generic netlink header).
    fn error_msg(seq: u32, code: i32) -> Vec<u8> {
        let echoed_payload: &[u8] = if code == 0 { &[] } else { &[15, 1, 0, 0] };
        let mut m = Vec::new();
        m.extend_from_slice(&(36 + echoed_payload.len() as u32).to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&code.to_ne_bytes());
        // the request's header, echoed
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&0x24u16.to_ne_bytes());
        m.extend_from_slice(&5u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(echoed_payload);
        m
    }

    fn done_msg(seq: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&3u16.to_ne_bytes()); // NLMSG_DONE
        m.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0i32.to_ne_bytes());
        m
    }

    /// A multi-part reply carrying `request`'s generic netlink payload.
    fn part(seq: u32, request: Request) -> Vec<u8> {
        let mut m = Vec::new();
        codec::write(&codec::frame(request, 0x24, seq, true).unwrap(), &mut m).unwrap();
        m[6..8].copy_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        m
    }

    fn start(x: &mut Exchange, req: Request) -> u32 {
        x.start(req, 0x24, true, &mut Vec::new()).unwrap()
    }

    fn start_unacked(x: &mut Exchange, req: Request) -> u32 {
        x.start(req, 0x24, false, &mut Vec::new()).unwrap()
    }

    fn del(port: u16) -> Request {
        codec::del_service(&crate::ipvs::types::ServiceKey::Addr {
            protocol: crate::ipvs::types::Protocol::Tcp,
            addr: "198.51.100.10".parse().unwrap(),
            port,
        })
        .unwrap()
    }

    #[test]
    fn a_batch_needs_one_ack_and_still_reports_each_error() {
        let mut x = Exchange::new();
        let mut wire = Vec::new();
        x.start(del(80), 0x24, false, &mut wire).unwrap();
        let flags = u16::from_ne_bytes([wire[6], wire[7]]);
        assert_eq!(flags & 0x4, 0, "NLM_F_ACK unset");
        let a = 1;
        let b = start_unacked(&mut x, del(81));
        let c = start_unacked(&mut x, del(82));
        let last = start(&mut x, del(83));
        // Only b failed: the kernel answers its error, then the last ack.
        let mut datagram = error_msg(b, -3);
        datagram.extend(error_msg(last, 0));
        let done = x.receive(&datagram).unwrap();
        let seqs: Vec<u32> = done.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [b, a, c, last]);
        assert_eq!(done[0].1, Err(KernelError { errno: 3 }));
        assert!(done[1..].iter().all(|(_, o)| o.is_ok()));
        assert_eq!(x.in_flight(), 0);
    }

    fn ack_flag(wire: &[u8]) -> bool {
        u16::from_ne_bytes([wire[6], wire[7]]) & 0x4 != 0
    }

    #[test]
    fn a_request_that_answers_is_always_acknowledged() {
        let mut x = Exchange::new();
        let mut wire = Vec::new();
        x.start(codec::get_info().unwrap(), 0x24, false, &mut wire)
            .unwrap();
        assert!(ack_flag(&wire), "GET_INFO asked for no ACK");
        let mut x = Exchange::new();
        let info = start_unacked(&mut x, codec::get_info().unwrap());
        let later = start_unacked(&mut x, del(80));
        let done = x.receive(&error_msg(info, 0)).unwrap();
        assert_eq!(done.len(), 1, "the later unacked request is not done yet");
        assert_eq!(x.in_flight(), 1);
        assert!(x.receive(&error_msg(later, 0)).unwrap().len() == 1);
    }

    #[test]
    fn a_batch_whose_last_request_fails_completes_the_others_as_done() {
        let mut x = Exchange::new();
        let a = start_unacked(&mut x, del(80));
        let b = start_unacked(&mut x, del(81));
        let last = start(&mut x, del(82));
        let done = x.receive(&error_msg(last, -2)).unwrap();
        assert_eq!(
            done,
            [
                (a, Ok(Vec::new())),
                (b, Ok(Vec::new())),
                (last, Err(KernelError { errno: 2 }))
            ]
        );
        assert_eq!(x.in_flight(), 0);
    }

    #[test]
    fn abandoned_requests_are_forgotten_and_their_late_replies_ignored() {
        let mut x = Exchange::new();
        let old = start_unacked(&mut x, del(80));
        let dump = start(&mut x, codec::get_services().unwrap());
        assert!(!x.can_start(&codec::get_services().unwrap()));
        x.abandon();
        assert_eq!(x.in_flight(), 0);
        assert!(x.can_start(&codec::get_services().unwrap()));
        let fresh = start(&mut x, del(81));
        assert!(fresh != old && fresh != dump, "sequence numbers reused");
        let mut datagram = error_msg(old, -2);
        datagram.extend(done_msg(dump));
        assert!(x.receive(&datagram).unwrap().is_empty());
        assert_eq!(
            x.receive(&error_msg(fresh, 0)).unwrap(),
            [(fresh, Ok(Vec::new()))]
        );
    }

    #[test]
    fn acks_and_errors_complete_their_own_requests_in_one_datagram() {
        let mut x = Exchange::new();
        let a = start(&mut x, codec::get_info().unwrap());
        let b = start(&mut x, codec::get_info().unwrap());
        let c = start(&mut x, codec::get_info().unwrap());
        let mut datagram = error_msg(b, -17);
        datagram.extend(error_msg(a, 0));
        let done = x.receive(&datagram).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(done[0], (b, Err(KernelError { errno: 17 })));
        assert_eq!(done[1].0, a);
        assert!(done[1].1.as_ref().unwrap().is_empty());
        assert_eq!(x.in_flight(), 1);
        assert_eq!(x.receive(&error_msg(c, 0)).unwrap().len(), 1);
        assert_eq!(x.in_flight(), 0);
    }

    #[test]
    fn a_dump_collects_parts_across_datagrams_until_done() {
        let mut x = Exchange::new();
        let seq = start(&mut x, codec::get_services().unwrap());
        let service = |port| crate::ipvs::types::Service {
            key: crate::ipvs::types::ServiceKey::Addr {
                protocol: crate::ipvs::types::Protocol::Tcp,
                addr: "198.51.100.10".parse().unwrap(),
                port,
            },
            scheduler: "wrr".into(),
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe_name: None,
        };
        let mut first = part(seq, codec::new_service(&service(80)).unwrap());
        first.extend(part(seq, codec::new_service(&service(443)).unwrap()));
        assert!(x.receive(&first).unwrap().is_empty());
        let mut second = part(seq, codec::new_service(&service(8080)).unwrap());
        second.extend(done_msg(seq));
        let done = x.receive(&second).unwrap();
        let parts = done[0].1.as_ref().unwrap();
        let ports: Vec<_> = parts
            .iter()
            .map(|g| match codec::parse_service(g).unwrap().service.key {
                crate::ipvs::types::ServiceKey::Addr { port, .. } => port,
                crate::ipvs::types::ServiceKey::Fwmark { .. } => 0,
            })
            .collect();
        assert_eq!(ports, vec![80, 443, 8080]);
    }

    #[test]
    fn a_dump_runs_alone() {
        let mut x = Exchange::new();
        let dump = codec::get_services().unwrap();
        let plain = codec::get_info().unwrap();
        let info = start(&mut x, codec::get_info().unwrap());
        assert!(x.can_start(&plain));
        assert!(!x.can_start(&dump), "a dump waits for the plain request");
        x.receive(&error_msg(info, 0)).unwrap();
        assert!(x.can_start(&dump));
        let seq = start(&mut x, dump);
        assert!(!x.can_start(&plain), "nothing starts during a dump");
        x.receive(&done_msg(seq)).unwrap();
        assert!(x.can_start(&plain));
    }

    #[test]
    fn unknown_sequence_numbers_are_ignored() {
        let mut x = Exchange::new();
        start(&mut x, codec::get_info().unwrap());
        assert!(x.receive(&error_msg(999, 0)).unwrap().is_empty());
        assert_eq!(x.in_flight(), 1);
    }

    #[test]
    fn a_truncated_datagram_is_an_error_not_a_panic() {
        let mut x = Exchange::new();
        let seq = start(&mut x, codec::get_info().unwrap());
        let msg = error_msg(seq, 0);
        assert!(x.receive(&msg[..10]).is_err());
    }
}
