//! Corruption, table-driven: every kind of file in a repository (pack, pack index, index file,
//! snapshot manifest, key file, config, parity shard and parity group description) gets a flipped bit, a truncation, a zeroed
//! block or its bytes swapped with another file's, under many seeds. Each case must end as
//! "repaired" (repair brings back every snapshot byte for byte and a clean verify) or
//! "reported" (open, verify or restore fails with a typed error naming the damaged file) —
//! never a panic, never a wrong byte restored.

mod common;

use containerarchive_core::lock::LockPolicy;
use containerarchive_core::ops::verify::VerifyOptions;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use containerarchive_core::ops::verify::VerifyLevel;
use containerarchive_core::*;

const PASS: &[u8] = b"corruption";

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBit,
    Truncate,
    ZeroBlock,
    Swap,
    Delete,
}

const KINDS: [&str; 11] = [
    "pack",
    "idx",
    "index",
    "snapshot",
    "snapshot-copy",
    "key",
    "key-copy",
    "config",
    "config-copy",
    "parity",
    "group",
];

fn kind_of(key: &str) -> &'static str {
    if key == "config.json" {
        "config"
    } else if key == "copies/config" {
        "config-copy"
    } else if key.starts_with("keys/") {
        "key"
    } else if key.starts_with("snapshots/") {
        "snapshot"
    } else if key.starts_with("copies/snapshots/") {
        "snapshot-copy"
    } else if key.starts_with("copies/keys/") {
        "key-copy"
    } else if key.starts_with("index/") {
        "index"
    } else if key.starts_with("parity/") && key.ends_with(".group") {
        "group"
    } else if key.starts_with("parity/") {
        "parity"
    } else if key.ends_with(".pack") {
        "pack"
    } else if key.ends_with(".idx") {
        "idx"
    } else {
        "other"
    }
}

struct Fixture {
    objects: BTreeMap<String, Vec<u8>>,
    snapshots: Vec<(Id, Vec<u8>)>,
}

fn fixture() -> Fixture {
    let opts = InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    };
    let repo = memory_repo(Some(PASS), &opts, 8);
    let mut snapshots = Vec::new();
    for (i, data) in [noise(3 << 20, 1), sql_dump(15_000, 2)]
        .into_iter()
        .enumerate()
    {
        let at = format!("2026-05-0{}T00:00:00Z", i + 1);
        let snap = ingest_items(&repo, &[("f", &data)], &at, &[]).unwrap();
        snapshots.push((snap.id, data));
    }
    Fixture {
        objects: repo.storage().snapshot_objects(),
        snapshots,
    }
}

/// A small deterministic generator (xorshift) for picking offsets.
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Apply `damage` to one file of `kind`; returns the damaged key (and the other, for a swap).
fn damage(
    objects: &mut BTreeMap<String, Vec<u8>>,
    kind: &str,
    how: Damage,
    seed: u64,
) -> Vec<String> {
    let mut pick = Pick(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let keys: Vec<String> = objects
        .keys()
        .filter(|k| kind_of(k) == kind)
        .cloned()
        .collect();
    assert!(!keys.is_empty(), "the fixture has a {kind} file");
    let key = keys[pick.below(keys.len())].clone();
    if let Damage::Delete = how {
        objects.remove(&key);
        return vec![key];
    }
    let bytes = objects.get_mut(&key).expect("listed");
    match how {
        Damage::Delete => unreachable!("handled above"),
        Damage::FlipBit => {
            let at = pick.below(bytes.len());
            bytes[at] ^= 1 << pick.below(8);
            vec![key]
        }
        Damage::Truncate => {
            let keep = pick.below(bytes.len());
            bytes.truncate(keep);
            vec![key]
        }
        Damage::ZeroBlock => {
            let at = pick.below(bytes.len());
            let end = (at + 4096).min(bytes.len());
            if bytes[at..end].iter().all(|&b| b == 0) {
                bytes[at] = 0xff;
            } else {
                bytes[at..end].fill(0);
            }
            vec![key]
        }
        Damage::Swap => {
            // Another file of the same kind, else any other file.
            let others: Vec<String> = objects
                .keys()
                .filter(|k| **k != key && kind_of(k) == kind && objects[*k] != objects[&key])
                .cloned()
                .collect();
            let others = if others.is_empty() {
                objects.keys().filter(|k| **k != key).cloned().collect()
            } else {
                others
            };
            let other = others[pick.below(others.len())].clone();
            let a = objects.remove(&key).expect("present");
            let b = objects.insert(other.clone(), a).expect("present");
            objects.insert(key.clone(), b);
            vec![key, other]
        }
    }
}

/// The file's own name as messages use it: its id (hex) or its key.
fn mentions(text: &str, keys: &[String]) -> bool {
    keys.iter().any(|key| {
        let stem = key.rsplit('/').next().unwrap().split('.').next().unwrap();
        text.contains(key.as_str()) || (stem.len() >= 16 && text.contains(&stem[..16]))
    })
}

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Corruption { .. }
            | Error::WrongPassphrase(_)
            | Error::SnapshotNotFound(_)
            | Error::Unsupported(_)
            | Error::Storage(_)
            | Error::RepositoryNotFound { .. }
    )
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Repaired,
    Reported,
}

/// Run one case; panics (caught by the caller) on any broken promise.
fn run_case(f: &Fixture, kind: &str, how: Damage, seed: u64) -> Outcome {
    let mut objects = f.objects.clone();
    let damaged = damage(&mut objects, kind, how, seed);
    let case = format!("{kind} {how:?} seed {seed} ({})", damaged.join(" <-> "));
    let storage = MemoryStorage::from_objects(objects);
    let repo = match Repository::open(storage, Some(PASS)) {
        Ok(r) => r,
        Err(e) => {
            assert!(typed(&e), "{case}: untyped open error {e:?}");
            assert!(
                mentions(&e.to_string(), &damaged) || kind == "config" || kind == "key",
                "{case}: open error does not name the file: {e}"
            );
            return Outcome::Reported;
        }
    };
    let mut reported = false;
    match repo.verify(VerifyOptions::new(VerifyLevel::Full)) {
        Ok(report) => {
            if !report.ok {
                let names = report.errors.iter().any(|f| {
                    mentions(
                        &format!(
                            "{} {} {} {}",
                            f.message,
                            f.pack.clone().unwrap_or_default(),
                            f.snapshot.clone().unwrap_or_default(),
                            f.chunk.clone().unwrap_or_default()
                        ),
                        &damaged,
                    )
                });
                // A deleted index file or group description is named by nothing that is
                // left: verify reports what it costs (chunks unindexed, packs unprotected).
                assert!(
                    names || matches!(how, Damage::Delete),
                    "{case}: no finding names the file: {:?}",
                    report.errors
                );
                reported = true;
            }
        }
        Err(e) => {
            assert!(typed(&e), "{case}: untyped verify error {e:?}");
            assert!(
                mentions(&e.to_string(), &damaged),
                "{case}: verify error does not name the file: {e}"
            );
            reported = true;
        }
    }
    // Whatever restores must be exactly right.
    let restores_exactly = |repo: &Repository<MemoryStorage>| -> bool {
        let mut all = true;
        for (id, data) in &f.snapshots {
            let result = repo
                .get_snapshot(&id.to_string())
                .and_then(|s| restore(repo, &s, "f"));
            match result {
                Ok(bytes) => assert!(bytes == *data, "{case}: snapshot {id} restored wrong bytes"),
                Err(e) => {
                    assert!(typed(&e), "{case}: untyped restore error {e:?}");
                    all = false;
                }
            }
        }
        all
    };
    let before = restores_exactly(&repo);
    let lock = lock_info();
    let repaired = repo.repair(&lock, &mut TestRng(seed), &LockPolicy::NEVER);
    if let Err(e) = &repaired {
        assert!(typed(e), "{case}: untyped repair error {e:?}");
    }
    let after = restores_exactly(&repo);
    let clean = repo
        .verify(VerifyOptions::new(VerifyLevel::Full))
        .map(|r| r.ok)
        .unwrap_or(false);
    if after && clean {
        return Outcome::Repaired;
    }
    assert!(
        reported || !before,
        "{case}: neither repaired nor reported (verify was clean, restores were exact)"
    );
    Outcome::Reported
}

#[test]
fn every_kind_of_damage_to_every_kind_of_file_is_repaired_or_reported() {
    let f = fixture();
    let seeds = 20u64;
    let mut tally: BTreeMap<(&str, String), (u32, u32)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    for kind in KINDS {
        for how in [
            Damage::FlipBit,
            Damage::Truncate,
            Damage::ZeroBlock,
            Damage::Swap,
            Damage::Delete,
        ] {
            for seed in 0..seeds {
                cases += 1;
                match catch_unwind(AssertUnwindSafe(|| run_case(&f, kind, how, seed))) {
                    Ok(outcome) => {
                        let t = tally.entry((kind, format!("{how:?}"))).or_default();
                        if outcome == Outcome::Repaired {
                            t.0 += 1;
                        } else {
                            t.1 += 1;
                        }
                    }
                    Err(p) => failures.push(
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default(),
                    ),
                }
            }
        }
    }
    for ((kind, how), (repaired, reported)) in &tally {
        eprintln!("{kind:9} {how:10} repaired {repaired:3} reported {reported:3}");
    }
    eprintln!("{cases} corruption cases, {} failed", failures.len());
    assert!(cases >= 1100);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One damaged manifest hides no other snapshot: the scan lists the rest and names it,
/// `latest` fails naming it (it might be the newest) rather than answer from the others, the
/// intact snapshot restores by id, prune refuses (that snapshot's data cannot be known) and
/// deletes nothing, and `forget` of the damaged one itself goes through.
#[test]
fn a_damaged_manifest_hides_no_other_snapshot_and_latest_is_never_stale() {
    let f = fixture();
    for (victim, how) in [(0, 0), (1, 1), (1, 2), (0, 3)] {
        let mut objects = f.objects.clone();
        let (bad, _) = &f.snapshots[victim];
        let (good, good_data) = &f.snapshots[1 - victim];
        // The manifest and its copy: nothing of that snapshot can be read.
        for key in [
            format!("snapshots/{bad}.snapshot"),
            format!("copies/snapshots/{bad}.snapshot"),
        ] {
            let bytes = objects.get_mut(&key).expect("the manifest is stored");
            match how {
                0 => bytes[40] ^= 4,
                1 => bytes.truncate(bytes.len() / 2),
                2 => bytes.clear(),
                _ => bytes[8..].fill(0),
            }
        }
        let case = format!("manifest of snapshot {victim}, damage {how}");
        let repo = Repository::open(MemoryStorage::from_objects(objects.clone()), Some(PASS))
            .unwrap_or_else(|e| panic!("{case}: open: {e}"));
        let scan = repo.scan_snapshots(&SnapshotFilter::default()).unwrap();
        assert_eq!(
            scan.snapshots.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![*good],
            "{case}"
        );
        assert_eq!(scan.unreadable.len(), 1, "{case}");
        assert_eq!(scan.unreadable[0].id, *bad, "{case}");
        assert!(
            matches!(scan.unreadable[0].error, Error::Corruption { .. }),
            "{case}"
        );
        let strict = repo.list_snapshots(&SnapshotFilter::default()).unwrap_err();
        assert!(
            strict.to_string().contains(&bad.to_hex()),
            "{case}: {strict}"
        );
        for e in [
            repo.get_snapshot("latest").unwrap_err(),
            repo.latest_snapshot(&SnapshotFilter::default())
                .unwrap_err(),
        ] {
            assert!(matches!(e, Error::Corruption { .. }), "{case}: {e:?}");
            let text = e.to_string();
            assert!(text.contains(&bad.to_hex()), "{case}: {text}");
            assert!(text.contains("latest"), "{case}: {text}");
        }
        let snap = repo.get_snapshot(&good.to_hex()).unwrap();
        assert_eq!(&restore(&repo, &snap, "f").unwrap(), good_data, "{case}");
        let e = repo
            .prune(
                &retention(
                    &containerarchive_core::retention::Policy {
                        keep_last: 1,
                        ..Default::default()
                    },
                    &BTreeMap::new(),
                ),
                containerarchive_core::ops::prune::PruneOptions::new().dry_run(false),
                &lock_info(),
                &mut TestRng(7),
                &LockPolicy::NEVER,
            )
            .unwrap_err();
        assert!(matches!(e, Error::Corruption { .. }), "{case}: {e:?}");
        assert!(e.to_string().contains("forget"), "{case}: {e}");
        assert_eq!(
            repo.storage().snapshot_objects(),
            objects,
            "{case}: the refused prune changed the repository"
        );
        let report = repo
            .forget(
                &[bad.to_hex()],
                containerarchive_core::ops::prune::PruneOptions::new().dry_run(false),
                &lock_info(),
                &mut TestRng(8),
                &LockPolicy::NEVER,
            )
            .unwrap_or_else(|e| panic!("{case}: forget of the damaged snapshot: {e}"));
        assert_eq!(report.removed, vec![*bad], "{case}");
        let scan = repo.scan_snapshots(&SnapshotFilter::default()).unwrap();
        assert!(scan.unreadable.is_empty(), "{case}");
        assert_eq!(repo.get_snapshot("latest").unwrap().id, *good, "{case}");
        let snap = repo.get_snapshot(&good.to_hex()).unwrap();
        assert_eq!(&restore(&repo, &snap, "f").unwrap(), good_data, "{case}");
        assert!(
            repo.verify(VerifyOptions::new(VerifyLevel::Full))
                .unwrap()
                .ok,
            "{case}: verify after forget"
        );
    }
}

/// Storage where some objects cannot be read (a bad sector: every read fails with an I/O
/// error) until they are written again or deleted.
struct BadSectors {
    inner: MemoryStorage,
    bad: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl BadSectors {
    fn unreadable(&self, key: &str) -> storage::StorageResult<()> {
        if self.bad.lock().unwrap().contains(key) {
            return Err(StorageError::Backend {
                key: key.into(),
                message: "Input/output error (os error 5)".into(),
            });
        }
        Ok(())
    }
    fn healed(&self, key: &str) {
        self.bad.lock().unwrap().remove(key);
    }
}

impl Storage for BadSectors {
    fn location(&self) -> String {
        "bad-sectors".into()
    }
    fn get(&self, key: &str) -> storage::StorageResult<Vec<u8>> {
        self.unreadable(key)?;
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> storage::StorageResult<Vec<u8>> {
        self.unreadable(key)?;
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> storage::StorageResult<()> {
        self.inner.put(key, data)?;
        self.healed(key);
        Ok(())
    }
    fn replace(&self, key: &str, data: &[u8]) -> storage::StorageResult<()> {
        self.inner.replace(key, data)?;
        self.healed(key);
        Ok(())
    }
    fn list(&self, prefix: &str) -> storage::StorageResult<Vec<(String, u64)>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> storage::StorageResult<()> {
        self.inner.delete(key)?;
        self.healed(key);
        Ok(())
    }
}

/// A file that cannot be read at all (an I/O error on every read) is damage to that file
/// alone, of every kind: both snapshots still list and restore exactly, verify names the file,
/// and repair writes it again (from its copy, parity or the packs) so that verify is clean.
#[test]
fn a_file_that_cannot_be_read_is_damage_to_that_file_alone_and_repair_rewrites_it() {
    let f = fixture();
    for kind in KINDS {
        let key = f
            .objects
            .keys()
            .find(|k| kind_of(k) == kind)
            .expect("every kind is in the fixture")
            .clone();
        let case = format!("{kind} ({key}) unreadable");
        let storage = BadSectors {
            inner: MemoryStorage::from_objects(f.objects.clone()),
            bad: std::sync::Mutex::new([key.clone()].into()),
        };
        let repo =
            Repository::open(&storage, Some(PASS)).unwrap_or_else(|e| panic!("{case}: open: {e}"));
        let scan = repo.scan_snapshots(&SnapshotFilter::default()).unwrap();
        assert!(scan.unreadable.is_empty(), "{case}: {:?}", scan.unreadable);
        assert_eq!(scan.snapshots.len(), f.snapshots.len(), "{case}");
        if kind != "pack" {
            // A pack is read when restored (repair rebuilds it); an index file's packs are
            // indexed from their `.idx` files; every other kind has a version that serves.
            for (id, data) in &f.snapshots {
                let snap = repo.get_snapshot(&id.to_hex()).unwrap();
                assert_eq!(&restore(&repo, &snap, "f").unwrap(), data, "{case}");
            }
        }
        let report = repo.verify(VerifyOptions::new(VerifyLevel::Full));
        match report {
            Ok(r) => assert!(
                !r.ok
                    && r.errors.iter().any(|e| e.message.contains(&key)
                        || e.pack.as_deref().is_some_and(|p| key.contains(p))),
                "{case}: verify does not name it: {:?}",
                r.errors
            ),
            Err(e) => panic!("{case}: verify stopped: {e}"),
        }
        repo.repair(&lock_info(), &mut TestRng(3), &LockPolicy::NEVER)
            .unwrap_or_else(|e| panic!("{case}: repair: {e}"));
        let after = repo.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
        assert!(after.ok, "{case}: after repair: {:?}", after.errors);
        assert!(
            storage.bad.lock().unwrap().is_empty(),
            "{case}: not rewritten"
        );
        for (id, data) in &f.snapshots {
            let snap = repo.get_snapshot(&id.to_hex()).unwrap();
            assert_eq!(&restore(&repo, &snap, "f").unwrap(), data, "{case}");
        }
    }
}

/// An index file or parity group description emptied, or with its magic destroyed, is not
/// recognisable by content any more, but its name is the repository's: repair replaces it
/// (and removes the damaged file) so that verify is clean again.
#[test]
fn repair_removes_index_files_and_group_descriptions_damaged_past_their_magic() {
    let f = fixture();
    for kind in ["index", "group"] {
        for how in ["empty", "magic", "flip"] {
            let case = format!("{kind} {how}");
            let mut objects = f.objects.clone();
            let key = objects
                .keys()
                .find(|k| kind_of(k) == kind)
                .expect("in the fixture")
                .clone();
            let bytes = objects.get_mut(&key).unwrap();
            match how {
                "empty" => bytes.clear(),
                "magic" => bytes[..4].fill(b'X'),
                _ => {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 1
                }
            }
            let repo = Repository::open(MemoryStorage::from_objects(objects), Some(PASS)).unwrap();
            if kind == "index" {
                // Before repair: every snapshot restores (its packs indexed from their `.idx`
                // files), and an ingest refuses, naming the damaged file.
                for (id, data) in &f.snapshots {
                    let snap = repo.get_snapshot(&id.to_hex()).unwrap();
                    assert_eq!(&restore(&repo, &snap, "f").unwrap(), data, "{case}");
                }
                let e =
                    ingest_items(&repo, &[("g", b"new")], "2026-06-01T00:00:00Z", &[]).unwrap_err();
                assert!(matches!(e, Error::Corruption { .. }), "{case}: {e:?}");
                assert!(
                    e.to_string().contains(&key) && e.to_string().contains("repair"),
                    "{case}: {e}"
                );
            }
            repo.repair(&lock_info(), &mut TestRng(5), &LockPolicy::NEVER)
                .unwrap_or_else(|e| panic!("{case}: repair: {e}"));
            let report = repo.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
            assert!(report.ok, "{case}: {:?}", report.errors);
            assert!(
                repo.storage().get(&key).is_err(),
                "{case}: {key} left in place"
            );
            for (id, data) in &f.snapshots {
                let snap = repo.get_snapshot(&id.to_hex()).unwrap();
                assert_eq!(&restore(&repo, &snap, "f").unwrap(), data, "{case}");
            }
        }
    }
}
