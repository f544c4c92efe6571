//! Heartbeats over a serial line: each signed heartbeat in a small frame
//! (`A5 5A`, a 2-byte big-endian length, the payload, a CRC-32 of length and
//! payload), sent no faster than the line can carry. A receiver finds
//! frames again after line noise by sliding one byte past anything that
//! does not check out.

use std::time::Duration;

use crate::wire::MAX_DATAGRAM;

const SYNC: [u8; 2] = [0xA5, 0x5A];
const HEADER: usize = 4;
const TRAILER: usize = 4;

/// A frame a little larger than a real heartbeat, for pacing.
const PACING_FRAME_BYTES: u32 = 160;

/// How often a heartbeat goes out on a line of `baud`: `keepalive`, or
/// slower when a frame would keep the line more than half busy (10 bits a
/// byte on the wire).
pub fn send_interval(baud: u32, keepalive: Duration) -> Duration {
    let bits = u64::from(PACING_FRAME_BYTES) * 10 * 2;
    let line = Duration::from_micros(bits * 1_000_000 / u64::from(baud.max(1)));
    keepalive.max(line)
}

/// Wraps `payload` in a frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(&SYNC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[2..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Finds frames in a byte stream.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    skipped: u64,
}

impl Deframer {
    /// Adds bytes read from the line; returns the payloads of every whole
    /// frame that checks out.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            // Drop everything before the next sync pattern.
            let start = self
                .buf
                .windows(2)
                .position(|w| w == SYNC)
                .unwrap_or(self.buf.len().saturating_sub(1));
            self.skip(start);
            if self.buf.len() < HEADER {
                return frames;
            }
            let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            if len > MAX_DATAGRAM {
                self.skip(1);
                continue;
            }
            let total = HEADER + len + TRAILER;
            if self.buf.len() < total {
                return frames;
            }
            let body = &self.buf[2..HEADER + len];
            let crc = u32::from_be_bytes([
                self.buf[HEADER + len],
                self.buf[HEADER + len + 1],
                self.buf[HEADER + len + 2],
                self.buf[HEADER + len + 3],
            ]);
            if crc32fast::hash(body) == crc {
                frames.push(self.buf[HEADER..HEADER + len].to_vec());
                self.buf.drain(..total);
            } else {
                self.skip(1);
            }
        }
    }

    /// Bytes thrown away as noise so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.skipped += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let mut d = Deframer::default();
        let wire: Vec<u8> = [frame(b"one"), frame(b""), frame(&[0xA5; 40])].concat();
        let mut got = Vec::new();
        for b in wire {
            got.extend(d.push(&[b]));
        }
        assert_eq!(got, vec![b"one".to_vec(), Vec::new(), vec![0xA5; 40]]);
        assert_eq!(d.skipped(), 0);
    }

    #[test]
    fn resynchronises_after_noise_and_damage() {
        let mut d = Deframer::default();
        let mut damaged = frame(b"damaged");
        damaged[6] ^= 0xFF;
        // Noise that contains a sync pattern and a huge length, a damaged
        // frame, a frame cut short by noise, then a good one.
        let mut wire = vec![0x00, 0xA5, 0x5A, 0xFF, 0xFF, 0x13];
        wire.extend(damaged);
        wire.extend(&frame(b"cut")[..5]);
        wire.extend([0xA5, 0x5A, 0x00]);
        // A noise length that looks plausible costs at most the frames it
        // swallows; the stream recovers for the ones after.
        // Heartbeat-sized payloads (about 100 bytes).
        let good = |n: u8| [vec![b'g', n], vec![0x5A; 98]].concat();
        for n in 0..6 {
            wire.extend(frame(&good(n)));
        }
        let got = d.push(&wire);
        assert!(got.len() >= 4, "{} frames", got.len());
        assert_eq!(got.last(), Some(&good(5)));
        assert!(got.iter().all(|f| f[0] == b'g'), "{got:?}");
        assert!(d.skipped() > 0);
    }

    #[test]
    fn pacing_fits_the_baud() {
        let keepalive = Duration::from_millis(20);
        // 160 bytes × 10 bits × 2 at 19200 baud ≈ 167ms.
        let slow = send_interval(19_200, keepalive);
        assert!(slow > Duration::from_millis(160) && slow < Duration::from_millis(170));
        assert_eq!(
            send_interval(19_200, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        assert!(send_interval(115_200, keepalive) < Duration::from_millis(30));
    }
}
