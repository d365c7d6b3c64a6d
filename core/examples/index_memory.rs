//! Resident memory of the in-memory index per chunk entry.
//!
//!     cargo run --release -p containerarchive-core --example index_memory -- 10000000
//!
//! Builds an index of N synthetic entries (packs of 32 blobs, as 8 MiB packs of 256 KiB chunks
//! hold) the way opening a repository loads index files and reports the growth of the process's resident set per entry. Linux only: it reads
//! /proc/self/status (this example is a measurement tool, not part of the no-I/O library).

use containerarchive_core::compress::Compression;
use containerarchive_core::index::IndexBuilder;
use containerarchive_core::pack::{BlobExtra, BlobKind, PackEntry};
use containerarchive_core::Id;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS line")
        * 1024
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let before = rss_bytes();
    let mut index = IndexBuilder::new();
    let per_pack = 32u64;
    let mut counter = 0u64;
    for p in 0..n.div_ceil(per_pack) {
        let pack = Id::sha256(&(u64::MAX - p).to_le_bytes());
        let entries: Vec<PackEntry> = (0..per_pack.min(n - counter))
            .map(|i| {
                counter += 1;
                PackEntry {
                    id: Id::sha256(&counter.to_le_bytes()),
                    offset: 8 + (i as u32) * 262_144,
                    stored_len: 131_072,
                    raw_len: 262_144,
                    compression: Compression::Zstd,
                    kind: BlobKind::Data,
                    // As in a repository with delta encoding: every full chunk has features.
                    extra: BlobExtra::Features(
                        [1u32, 2, 3, 4, 5, 6, 7, 8]
                            .map(|k| (counter as u32 ^ k).wrapping_mul(0x9e37_79b9)),
                    ),
                }
            })
            .collect();
        index.add_pack(pack, 8 << 20, &entries);
    }
    let index = index.finish();
    let after = rss_bytes();
    assert_eq!(index.len() as u64, n);
    println!(
        "{n} entries: {:.1} MiB resident, {:.1} bytes per entry",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / n as f64
    );
}
