//! Entry points for fuzzing the parsers of every on-disk structure.
//!
//! Each target takes arbitrary bytes, hands them to one parser and then uses whatever the
//! parser accepted the way the engine would (reads the blobs a pack header points at, builds an
//! index from an index file, looks up the items of a manifest…). A target must return for every
//! input: a panic, an out-of-bounds access or an allocation sized by an unchecked length field
//! is a bug. The cargo-fuzz targets in `core/fuzz/` call these under libFuzzer, and
//! `core/tests/fuzz_corpus.rs` replays the committed corpus and deterministic mutations of
//! [`seeds`] on stable in every CI run.
//!
//! Most files are sealed (a checksum, or an AEAD tag, over the body), so random bytes stop at
//! the seal. For the parsers behind it to be reached, an input whose first byte is even is the
//! *body*, sealed here with the keys of an unencrypted repository before parsing; an odd first
//! byte passes the rest as the whole file, magic, seal and all.

use std::collections::BTreeMap;

use crate::blob::read_blob;
use crate::compress::{decompress, ruzstd_decompress, Compression};
use crate::config::CONFIG_KEY;
use crate::crypto::{KeyFile, Keys, RandomSource, NONCE_LEN};
use crate::id::Id;
use crate::index::{decode_index_file, Index, IndexBuilder, Location, INDEX_LABEL, INDEX_MAGIC};
use crate::lock::{read_locks, LockInfo, LOCK_LABEL, LOCK_MAGIC};
use crate::pack::{
    decode_idx, pack_key, read_header_from_storage, read_pack_entries, HEADER_LABEL, IDX_LABEL,
    IDX_MAGIC, MAX_BLOB_LEN, PACK_END_MAGIC, PACK_MAGIC,
};
use crate::parity::{decode_group, GROUP_LABEL, GROUP_MAGIC};
use crate::repo::{InitOptions, Repository};
use crate::snapshot::{decode_snapshot, SNAPSHOT_LABEL, SNAPSHOT_MAGIC};
use crate::storage::{MemoryStorage, Storage};

/// A fuzz target: must return, whatever the bytes; `true` when the parser accepted them.
pub type Target = fn(&[u8]) -> bool;

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("pack", pack),
    ("idx", idx),
    ("index", index),
    ("manifest", manifest),
    ("key_file", key_file),
    ("config", config),
    ("parity_group", parity_group),
    ("lock", lock),
    ("blob", blob),
    ("delta", delta),
];

/// `(body mode, rest)`: see the module documentation.
fn mode(data: &[u8]) -> Option<(bool, &[u8])> {
    data.split_first().map(|(m, rest)| (m & 1 == 0, rest))
}

fn sealed(magic: &[u8], label: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&Keys::plain().seal(label, body, [0; NONCE_LEN]));
    out
}

/// The file a target parses: the input itself, or the input sealed as a body.
fn file_of(data: &[u8], magic: &[u8], label: &[u8]) -> Option<Vec<u8>> {
    let (body, rest) = mode(data)?;
    Some(if body {
        sealed(magic, label, rest)
    } else {
        rest.to_vec()
    })
}

/// A data pack: magic, blobs, sealed header and trailer. In body mode the input is
/// `u16le(blob area length) ‖ blob area ‖ header body`. Every blob the header accepts is read
/// as restore reads it, and the ranged header read (what restore and verify use) must agree
/// with the whole-file read.
pub fn pack(data: &[u8]) -> bool {
    let Some((body, rest)) = mode(data) else {
        return false;
    };
    let file = if body {
        let Some((n, rest)) = rest.split_first_chunk::<2>() else {
            return false;
        };
        let (blobs, header) = rest.split_at((u16::from_le_bytes(*n) as usize).min(rest.len()));
        let sealed_header = Keys::plain().seal(HEADER_LABEL, header, [0; NONCE_LEN]);
        let mut f = PACK_MAGIC.to_vec();
        f.extend_from_slice(blobs);
        f.extend_from_slice(&sealed_header);
        f.extend_from_slice(&(sealed_header.len() as u32).to_le_bytes());
        f.extend_from_slice(PACK_END_MAGIC);
        f
    } else {
        rest.to_vec()
    };
    let keys = Keys::plain();
    let id = Id::sha256(&file);
    let storage = MemoryStorage::new();
    storage.put(&pack_key(&id), &file).expect("memory put");
    let ranged = read_header_from_storage(&storage, &keys, &id, file.len() as u64);
    let Ok(entries) = read_pack_entries(&keys, "fuzz", &file) else {
        return false;
    };
    assert_eq!(
        ranged.ok().as_ref(),
        Some(&entries),
        "ranged and whole-file header reads disagree"
    );
    for entry in entries {
        let start = entry.offset as usize;
        let stored = &file[start..start + entry.stored_len as usize];
        if let Ok(plain) = read_blob(&keys, &Location { pack: id, entry }, stored, None) {
            assert_eq!(plain.len(), entry.raw_len as usize);
            assert_eq!(keys.chunk_id(&plain), entry.id);
        }
    }
    true
}

/// A pack's `.idx` file; accepted entries must lie inside the pack size it records.
pub fn idx(data: &[u8]) -> bool {
    let Some(file) = file_of(data, IDX_MAGIC, IDX_LABEL) else {
        return false;
    };
    let Ok((_, size, entries)) = decode_idx(&Keys::plain(), "fuzz", &file) else {
        return false;
    };
    for e in entries {
        assert!(e.offset as u64 + e.stored_len as u64 <= size);
        assert!(e.stored_len <= MAX_BLOB_LEN && e.raw_len <= MAX_BLOB_LEN);
    }
    true
}

/// An index file; what it lists is loaded into both in-memory index forms and looked up.
pub fn index(data: &[u8]) -> bool {
    let Some(file) = file_of(data, INDEX_MAGIC, INDEX_LABEL) else {
        return false;
    };
    let Ok(packs) = decode_index_file(&Keys::plain(), "fuzz", &file) else {
        return false;
    };
    let mut built = IndexBuilder::new();
    let mut incremental = Index::new();
    for p in &packs {
        built.add_pack(p.id, p.size, &p.entries);
        incremental.add_pack(p.id, p.size, &p.entries);
    }
    let built = built.finish();
    for p in &packs {
        for e in &p.entries {
            let a = built.get(&e.id).expect("every listed chunk is found");
            let b = incremental.get(&e.id).expect("every listed chunk is found");
            assert_eq!(a.entry.id, e.id);
            assert_eq!(b.entry.id, e.id);
        }
    }
    true
}

/// A snapshot manifest; every item it accepts must be found by name.
pub fn manifest(data: &[u8]) -> bool {
    let Some(file) = file_of(data, SNAPSHOT_MAGIC, SNAPSHOT_LABEL) else {
        return false;
    };
    let Ok(snap) = decode_snapshot(&Keys::plain(), Id::sha256(&file), &file) else {
        return false;
    };
    for item in &snap.manifest.items {
        assert_eq!(snap.item(&item.name).expect("listed item").name, item.name);
    }
    true
}

/// A key file; one whose costs are small enough to derive quickly is also tried with a
/// passphrase (larger ones are bounded by [`KeyFile::parse`], which the target checks).
pub fn key_file(data: &[u8]) -> bool {
    let Ok(kf) = KeyFile::parse(data) else {
        return false;
    };
    kf.kdf_params.check().expect("parse checked the costs");
    let p = kf.kdf_params;
    if p.memory_kib <= 256 && p.iterations <= 2 && p.parallelism <= 4 {
        let _ = kf.unwrap_master(&Id([0; 32]), b"fuzz");
    }
    true
}

/// `config.json`, opened as a repository with and without a passphrase.
pub fn config(data: &[u8]) -> bool {
    let mut accepted = false;
    for pass in [None, Some(&b"fuzz"[..])] {
        let storage = MemoryStorage::new();
        storage.put(CONFIG_KEY, data).expect("memory put");
        match Repository::open(storage, pass) {
            Ok(repo) => {
                repo.config().validate().expect("open validated the config");
                accepted = true;
            }
            // An encrypted config gets as far as looking for key files (there are none).
            Err(crate::Error::Corruption { object, .. }) if object == "keys/" => accepted = true,
            Err(_) => {}
        }
    }
    accepted
}

/// A parity group description.
pub fn parity_group(data: &[u8]) -> bool {
    file_of(data, GROUP_MAGIC, GROUP_LABEL)
        .is_some_and(|file| decode_group(&Keys::plain(), "fuzz", &file).is_ok())
}

/// A lock file, read as every lock-taking operation reads the `locks/` folder.
pub fn lock(data: &[u8]) -> bool {
    let Some(file) = file_of(data, LOCK_MAGIC, LOCK_LABEL) else {
        return false;
    };
    let storage = MemoryStorage::new();
    let key = format!("locks/{}.lock", "f".repeat(64));
    storage.put(&key, &file).expect("memory put");
    let locks = read_locks(&storage, &Keys::plain()).expect("memory storage reads");
    locks.len() == 1 && locks[0].info.is_some()
}

/// One stored blob: `compression code ‖ u24le(raw length) ‖ stored bytes`. A blob never
/// inflates beyond its recorded raw length, in the native decoder or the pure-Rust one the
/// browser uses.
pub fn blob(data: &[u8]) -> bool {
    let Some((&[code, a, b, c], stored)) = data.split_first_chunk::<4>() else {
        return false;
    };
    let Some(algorithm) = Compression::from_code(code & 0x0f) else {
        return false;
    };
    let raw_len = u32::from_le_bytes([a, b, c, 0]) as usize;
    let native = decompress(algorithm, stored, raw_len);
    if let Ok(out) = &native {
        assert_eq!(out.len(), raw_len);
    }
    if algorithm == Compression::Zstd {
        let pure = ruzstd_decompress(stored, raw_len);
        if let Ok(out) = &pure {
            assert!(out.len() <= raw_len + 1, "ruzstd output is bounded");
        }
        // Damaged frames may decode to different garbage in the two decoders (fuzzing found
        // frames both accept with different output); the chunk id check, or in an encrypted
        // repository the AEAD tag over the frame, rejects such a blob either way. Frames the
        // engine wrote decode identically: see `every_seed_is_accepted_by_its_parser`.
        let _ = pure;
    }
    native.is_ok()
}

struct CounterRng(u64);

impl RandomSource for CounterRng {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            self.0 += 1;
            chunk.copy_from_slice(&Id::sha256(&self.0.to_le_bytes()).0[..chunk.len()]);
        }
    }
}

/// A delta blob against a base: `u16le(base length) ‖ base ‖ u24le(raw length) ‖ frame`. Both
/// decoders (the C library natively, `ruzstd` as in the browser) stay within the recorded
/// length, and the blob reader never hands out bytes that do not hash to the chunk id (here the
/// id of the native decoder's output, or of the base when that fails).
pub fn delta(data: &[u8]) -> bool {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let Some((base, rest)) = rest.split_at_checked(u16::from_le_bytes(*len) as usize) else {
        return false;
    };
    let Some((&[a, b, c], frame)) = rest.split_first_chunk::<3>() else {
        return false;
    };
    let raw_len = u32::from_le_bytes([a, b, c, 0]) as usize;
    let native = crate::delta::decode_delta(base, frame, raw_len);
    let pure = crate::delta::ruzstd_decode_delta(base, frame, raw_len);
    for out in [&native, &pure].into_iter().flatten() {
        assert_eq!(
            out.len(),
            raw_len,
            "a delta decodes to exactly its recorded length"
        );
    }
    let keys = Keys::plain();
    let id = keys.chunk_id(native.as_deref().unwrap_or(base));
    let entry = crate::pack::PackEntry {
        id,
        offset: 8,
        stored_len: frame.len() as u32,
        raw_len: raw_len as u32,
        compression: Compression::ZstdDelta,
        kind: crate::pack::BlobKind::Data,
        extra: crate::pack::BlobExtra::Base(crate::pack::Bases::one(keys.chunk_id(base)), None),
    };
    let loc = Location { pack: id, entry };
    if let Ok(out) = read_blob(&keys, &loc, frame, Some(base)) {
        assert_eq!(
            keys.chunk_id(&out),
            id,
            "a delta is never read as other bytes"
        );
    }
    native.is_ok()
}

/// Valid inputs for every target, taken from small real repositories (unencrypted with zstd
/// and with gzip, and an encrypted one for its key file), in both input modes. Fuzzing starts
/// from these so that mutations explore the structures rather than their magic numbers.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (compression, pass) in [
        (Compression::Zstd, None),
        (Compression::Gzip, None),
        (Compression::Zstd, Some(&b"seed"[..])),
    ] {
        let objects = small_repository(compression, pass);
        for (key, file) in &objects {
            let target = if key == CONFIG_KEY {
                "config"
            } else if key.starts_with("keys/") {
                "key_file"
            } else if key.starts_with("snapshots/") {
                "manifest"
            } else if key.starts_with("index/") {
                "index"
            } else if key.ends_with(".group") {
                "parity_group"
            } else if key.ends_with(".pack") {
                "pack"
            } else if key.ends_with(".idx") {
                "idx"
            } else {
                continue;
            };
            if pass.is_some() && !matches!(target, "key_file" | "config") {
                continue; // sealed with AEAD: only the raw seal check would be reached
            }
            if matches!(target, "key_file" | "config") {
                out.push((target, file.clone()));
                continue;
            }
            out.push((target, [&[1u8][..], file].concat()));
            let body = &file[8..file.len() - 32];
            if target == "pack" {
                // Re-cut as u16(blob area) ‖ blobs ‖ header body.
                let trailer = &file[file.len() - 12..];
                let header_len = u32::from_le_bytes(trailer[..4].try_into().expect("4")) as usize;
                let header_start = file.len() - 12 - header_len;
                let blobs = &file[8..header_start];
                let header = &file[header_start..file.len() - 12 - 32];
                if blobs.len() <= u16::MAX as usize {
                    let mut seed = vec![0u8];
                    seed.extend_from_slice(&(blobs.len() as u16).to_le_bytes());
                    seed.extend_from_slice(blobs);
                    seed.extend_from_slice(header);
                    out.push((target, seed));
                }
                for e in read_pack_entries(&Keys::plain(), "seed", file).expect("valid pack") {
                    if e.compression == Compression::ZstdDelta {
                        continue; // decoded against a base: the `delta` target's seeds
                    }
                    let mut seed = vec![e.compression.code()];
                    seed.extend_from_slice(&e.raw_len.to_le_bytes()[..3]);
                    let start = e.offset as usize;
                    seed.extend_from_slice(&file[start..start + e.stored_len as usize]);
                    out.push(("blob", seed));
                }
            } else {
                out.push((target, [&[0u8][..], body].concat()));
            }
        }
        if crate::delta::can_encode() {
            out.extend(delta_seeds());
        }
        let lock_json = serde_json::to_vec(&seed_lock()).expect("lock info serializes");
        out.push(("lock", [&[0u8][..], &lock_json].concat()));
    }
    out
}

/// Deltas of a few shapes (a night's changed rows, a cut, an empty chunk) against their bases.
fn delta_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rows = |n: usize, v: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!("{i}\t{}\tv{}\n", i * 7919 % 1000, (i % 9 == 0) as usize * v).into_bytes()
            })
            .collect()
    };
    let base = rows(2000, 1);
    let mut out = Vec::new();
    for data in [
        rows(2000, 2),
        base[500..].to_vec(),
        Vec::new(),
        rows(300, 3),
    ] {
        let frame = crate::delta::encode_delta(&base, &data, 3).expect("native builds encode");
        let mut seed = (base.len() as u16).to_le_bytes().to_vec();
        seed.extend_from_slice(&base);
        seed.extend_from_slice(&(data.len() as u32).to_le_bytes()[..3]);
        seed.extend_from_slice(&frame);
        out.push(("delta", seed));
    }
    out
}

fn seed_lock() -> LockInfo {
    LockInfo {
        hostname: "seed".into(),
        pid: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        refreshed_at: "2026-01-01T00:00:00Z".into(),
        exclusive: false,
        operation: "ingest".into(),
        process: String::new(),
    }
}

fn small_repository(compression: Compression, pass: Option<&[u8]>) -> BTreeMap<String, Vec<u8>> {
    let mut opts = InitOptions {
        compression,
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    opts.chunker.min_size = 1024;
    opts.chunker.avg_size = 4096;
    opts.chunker.max_size = 16 * 1024;
    opts.kdf.memory_kib = 64;
    opts.kdf.iterations = 1;
    let repo = Repository::init(
        MemoryStorage::new(),
        pass,
        &opts,
        "2026-01-01T00:00:00Z",
        "seed",
        &mut CounterRng(7),
    )
    .expect("init in memory");
    let text: Vec<u8> = (0..3000)
        .flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'row {}');\n", i % 37).into_bytes())
        .collect();
    let mut noise = CounterRng(11);
    let mut random = vec![0u8; 6000];
    noise.fill(&mut random);
    let mut ingest = repo
        .ingest(
            &seed_lock(),
            Box::new(CounterRng(13)),
            &crate::lock::LockPolicy::NEVER,
        )
        .expect("ingest in memory");
    for (name, bytes) in [("db/dump.sql", &text), ("blob.bin", &random)] {
        ingest.start_item(name, "raw").expect("valid name");
        ingest.write(bytes).expect("memory write");
        ingest.finish_item().expect("memory write");
    }
    let tags = BTreeMap::from([("host".to_string(), "seed".to_string())]);
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").expect("valid time");
    ingest.commit(&at, tags.clone()).expect("commit in memory");
    // A second night with a few rows changed: delta blobs, and the extras table (bases,
    // features) in pack headers, `.idx` and index files.
    let night2: Vec<u8> = (0..3000)
        .flat_map(|i| {
            format!(
                "INSERT INTO t VALUES ({i}, 'row {}');\n",
                i % (37 + (i % 50 == 0) as usize)
            )
            .into_bytes()
        })
        .collect();
    let mut ingest = repo
        .ingest(
            &seed_lock(),
            Box::new(CounterRng(17)),
            &crate::lock::LockPolicy::NEVER,
        )
        .expect("ingest in memory");
    ingest.start_item("db/dump.sql", "raw").expect("valid name");
    ingest.write(&night2).expect("memory write");
    ingest.finish_item().expect("memory write");
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-03T03:04:05Z").expect("valid time");
    ingest.commit(&at, tags).expect("commit in memory");
    repo.storage().snapshot_objects()
}
