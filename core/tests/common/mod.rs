#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, FixedOffset};
use containerarchive_core::crypto::KdfParams;
use containerarchive_core::lock::LockPolicy;
use containerarchive_core::storage::StorageResult;
use containerarchive_core::*;

/// Deterministic "randomness" for reproducible tests (SHA-256 of a counter; not for real keys).
pub struct TestRng(pub u64);

impl RandomSource for TestRng {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            self.0 += 1;
            let h = Id::sha256(&self.0.to_le_bytes());
            chunk.copy_from_slice(&h.0[..chunk.len()]);
        }
    }
}

pub fn fast_kdf() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    }
}

pub fn time(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

pub fn lock_info() -> LockInfo {
    LockInfo {
        hostname: "test".into(),
        pid: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        refreshed_at: "2026-01-01T00:00:00Z".into(),
        exclusive: false,
        operation: "ingest".into(),
        process: String::new(),
    }
}

/// Pseudo-random bytes (xorshift), incompressible.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Text that compresses, like a SQL dump.
pub fn sql_dump(rows: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rows {
        out.extend_from_slice(
            format!(
                "INSERT INTO orders VALUES ({i}, 'customer-{}', {}.{:02}, '2026-01-{:02}');\n",
                (i as u64 * 7919 + seed) % 100_000,
                (i * 31) % 1000,
                i % 100,
                i % 28 + 1
            )
            .as_bytes(),
        );
    }
    out
}

pub fn ingest_items<S: Storage + Send + Sync>(
    repo: &Repository<S>,
    items: &[(&str, &[u8])],
    at: &str,
    tags: &[(&str, &str)],
) -> Result<Snapshot> {
    let mut ing = repo.ingest(&lock_info(), Box::new(TestRng(999)), &LockPolicy::NEVER)?;
    for (name, data) in items {
        ing.start_item(name, "raw")?;
        for piece in data.chunks(3 << 20) {
            ing.write(piece)?;
        }
        ing.finish_item()?;
    }
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ing.commit(&time(at), tags)
}

pub fn restore<S: Storage>(repo: &Repository<S>, snap: &Snapshot, item: &str) -> Result<Vec<u8>> {
    let mut r = repo.item_reader(snap, item)?;
    let mut out = Vec::new();
    while let Some(batch) = r.next_batch()? {
        for c in batch {
            out.extend_from_slice(&c);
        }
    }
    Ok(out)
}

/// A storage that counts reads by key prefix, to prove what an operation touches.
pub struct CountingStorage<S> {
    pub inner: S,
    pub pack_reads: AtomicUsize,
}

impl<S: Storage> Storage for CountingStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        if key.starts_with("packs/") {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        if key.starts_with("packs/") {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        self.inner.put(key, data)
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key)
    }
}

/// A new repository on `storage`, created at a fixed time.
pub fn init_on<S: Storage>(
    storage: S,
    pass: Option<&[u8]>,
    opts: &InitOptions,
    seed: u64,
) -> Repository<S> {
    Repository::init(
        storage,
        pass,
        opts,
        "2026-01-01T00:00:00Z",
        "",
        &mut TestRng(seed),
    )
    .unwrap()
}

/// A new repository in memory, created at a fixed time.
pub fn memory_repo(
    pass: Option<&[u8]>,
    opts: &InitOptions,
    seed: u64,
) -> Repository<MemoryStorage> {
    init_on(MemoryStorage::new(), pass, opts, seed)
}

/// A retention of `policy` over the snapshots carrying `tags`, grouped as by default.
#[allow(dead_code)]
pub fn retention(
    policy: &containerarchive_core::retention::Policy,
    tags: &BTreeMap<String, String>,
) -> containerarchive_core::ops::prune::Retention {
    containerarchive_core::ops::prune::Retention {
        filter: SnapshotFilter {
            tags: tags.clone(),
            ..SnapshotFilter::default()
        },
        ..containerarchive_core::ops::prune::Retention::new(policy.clone())
    }
}
