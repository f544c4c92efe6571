#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn trim_returns_what_a_burst_freed() {
    // A burst: 4,096 probe-sized blocks, each followed by a small block
    // that outlives it, so the freed ones sit below live memory and the
    // heap cannot simply shrink from its top.
    const BLOCK: usize = 16 * 1024;
    let mut blocks = Vec::new();
    let mut pins = Vec::new();
    for i in 0..4096 {
        blocks.push(vec![u8::try_from(i % 251).unwrap(); BLOCK]);
        pins.push(Box::new([0u64; 8]));
    }
    drop(blocks);
    let before = rss_kib();
    trim();
    let after = rss_kib();
    assert!(
        before - after.min(before) > 32 * 1024,
        "RSS {before} KiB before the trim, {after} KiB after: the 64 MiB freed stayed resident"
    );
    assert_eq!(pins.len(), 4096);
}
