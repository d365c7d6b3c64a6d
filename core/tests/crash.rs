//! Crash at any point: an ingest, a prune and a repair are each stopped after their 1st, 2nd,
//! … Nth change to storage (every N up to the total), as a killed process would be. After each
//! simulated crash the repository must open, verify clean at the full level, restore every
//! snapshot that had been reported complete byte for byte, and take the next ingest; prune then
//! removes whatever the dead process left behind.

mod common;

use containerarchive_core::lock::LockPolicy;
use containerarchive_core::ops::prune::PruneOptions;
use containerarchive_core::ops::verify::VerifyOptions;
use std::collections::BTreeMap;

use common::*;
use containerarchive_core::ops::verify::VerifyLevel;
use containerarchive_core::retention::Policy;
use containerarchive_core::storage::CrashingStorage;
use containerarchive_core::*;

const PASS: &[u8] = b"crash";

fn small_packs() -> InitOptions {
    InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    }
}

/// The process that crashed is gone: its lock is stale.
fn gone(_: &LockInfo) -> bool {
    true
}

/// Every other holder is dead (the crashed process of the previous step).
const DEAD: LockPolicy<'static> = LockPolicy {
    stale_after_ms: i64::MAX,
    holder_gone: &gone,
};

fn maintenance() -> LockInfo {
    let mut l = lock_info();
    l.operation = "maintenance".into();
    l
}

/// A repository holding `snapshots` (name, data, snapshot) with a few packs and parity.
struct World {
    objects: BTreeMap<String, Vec<u8>>,
    complete: Vec<(Snapshot, String, Vec<u8>)>,
}

fn world(snapshots: usize) -> World {
    let repo = init_on(MemoryStorage::new(), Some(PASS), &small_packs(), 5);
    let mut complete = Vec::new();
    for i in 0..snapshots {
        let data = noise((3 << 20) + i * 70_001, 10 + i as u64);
        let at = format!("2026-03-{:02}T00:00:00Z", i + 1);
        let snap = ingest_items(&repo, &[("vol", &data)], &at, &[]).unwrap();
        complete.push((snap, "vol".to_string(), data));
    }
    World {
        objects: repo.storage().snapshot_objects(),
        complete,
    }
}

/// Everything that must hold in the storage a crashed operation left behind.
fn check_after_crash(
    objects: BTreeMap<String, Vec<u8>>,
    complete: &[(Snapshot, String, Vec<u8>)],
    what: &str,
) {
    let repo = Repository::open(MemoryStorage::from_objects(objects), Some(PASS))
        .unwrap_or_else(|e| panic!("{what}: reopening failed: {e}"));
    let report = repo.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(report.ok, "{what}: verify full found {:?}", report.errors);
    for (snap, item, data) in complete {
        let snap = repo
            .get_snapshot(&snap.id.to_string())
            .unwrap_or_else(|e| panic!("{what}: snapshot {} is gone: {e}", snap.id));
        assert!(
            restore(&repo, &snap, item).unwrap() == *data,
            "{what}: snapshot {} does not restore byte-identical",
            snap.id
        );
    }
    // The next ingest takes over from the dead process (its lock is stale).
    let next = noise(1 << 20, 999);
    let mut ing = repo
        .ingest(&lock_info(), Box::new(TestRng(4242)), &DEAD)
        .unwrap_or_else(|e| panic!("{what}: next ingest refused: {e}"));
    ing.start_item("next", "raw").unwrap();
    ing.write(&next).unwrap();
    ing.finish_item().unwrap();
    let snap = ing
        .commit(&time("2026-04-01T00:00:00Z"), BTreeMap::new())
        .unwrap_or_else(|e| panic!("{what}: next ingest failed: {e}"));
    assert_eq!(restore(&repo, &snap, "next").unwrap(), next, "{what}");
    // A prune, hours later, cleans up what the crash left (orphan packs, half-built groups, a
    // deletion notice, a pending manifest) and the repository still verifies.
    repo.storage().advance_clock(2 * 3600 * 1000);
    let policy = Policy {
        keep_last: 100,
        ..Policy::default()
    };
    let dead_and_old = LockPolicy {
        stale_after_ms: 30 * 60 * 1000,
        holder_gone: &gone,
    };
    repo.prune(
        &retention(&policy, &BTreeMap::new()),
        PruneOptions::new().dry_run(false),
        &maintenance(),
        &mut TestRng(7),
        &dead_and_old,
    )
    .unwrap_or_else(|e| panic!("{what}: prune after the crash failed: {e}"));
    let report = repo.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(
        report.ok,
        "{what}: verify after prune found {:?}",
        report.errors
    );
    // Nor is anything of the commit protocol left: a crashed prune's deletion notice, a
    // crashed ingest's pending manifest (its snapshot was committed or never was).
    for prefix in ["locks/", "deleting/", "snapshots/pending/"] {
        let left: Vec<String> = repo
            .storage()
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(left.is_empty(), "{what}: left under {prefix}: {left:?}");
    }
}

/// Run `op` on a copy of `w` that crashes after `budget` changes; `None` when it completed.
fn crash_at<T>(
    w: &World,
    budget: u64,
    op: impl FnOnce(&Repository<CrashingStorage<MemoryStorage>>) -> Result<T>,
) -> (Option<BTreeMap<String, Vec<u8>>>, u64) {
    let storage = CrashingStorage::new(MemoryStorage::from_objects(w.objects.clone()), budget);
    let repo = Repository::open(storage, Some(PASS)).unwrap();
    let result = op(&repo);
    let storage = repo.storage();
    match result {
        // A committed ingest whose last change (removing its lock) crashed still reports its
        // snapshot: the lock is left to go stale. Check that state like any other crash.
        Ok(_) if storage.crashed() => (Some(storage.inner().snapshot_objects()), storage.changes()),
        Ok(_) => (None, storage.changes()),
        Err(e) => {
            assert!(storage.crashed(), "failed without a crash: {e}");
            (Some(storage.inner().snapshot_objects()), storage.changes())
        }
    }
}

/// Sweep every crash point of `op`, checking that the snapshots `complete` survive each;
/// returns how many crash points were tried.
fn sweep<T>(
    w: &World,
    complete: &[(Snapshot, String, Vec<u8>)],
    name: &str,
    op: impl Fn(&Repository<CrashingStorage<MemoryStorage>>) -> Result<T>,
) -> u64 {
    let (done, total) = crash_at(w, u64::MAX, &op);
    assert!(done.is_none(), "{name} completes without a crash");
    assert!(total >= 5, "{name} makes {total} changes");
    for budget in 0..total {
        let (left, _) = crash_at(w, budget, &op);
        let left = left.unwrap_or_else(|| panic!("{name} crashed at change {budget}"));
        check_after_crash(
            left,
            complete,
            &format!("{name}, crash after {budget} of {total} changes"),
        );
    }
    total
}

#[test]
fn an_ingest_killed_after_any_change_leaves_a_consistent_repository() {
    let w = world(1);
    let a = noise(5 << 20, 21);
    let b = sql_dump(20_000, 22);
    let tried = sweep(&w, &w.complete, "ingest", |repo| {
        let mut ing = repo.ingest(&lock_info(), Box::new(TestRng(31)), &LockPolicy::NEVER)?;
        for (name, data) in [("a", &a), ("b", &b)] {
            ing.start_item(name, "raw")?;
            for piece in data.chunks(1 << 20) {
                ing.write(piece)?;
            }
            ing.finish_item()?;
        }
        ing.commit(&time("2026-03-20T00:00:00Z"), BTreeMap::new())
    });
    eprintln!("ingest: {tried} crash points");
}

#[test]
fn a_prune_killed_after_any_change_loses_no_kept_snapshot() {
    let w = world(4);
    // Keep the newest two: the older two are removed and packs they shared are rewritten.
    let policy = Policy {
        keep_last: 2,
        ..Policy::default()
    };
    // Snapshots the prune was removing may or may not survive a crash; the kept ones must.
    let tried = sweep(&w, &w.complete[2..], "prune", |repo| {
        repo.prune(
            &retention(&policy, &BTreeMap::new()),
            PruneOptions::new().dry_run(false),
            &maintenance(),
            &mut TestRng(41),
            &LockPolicy::NEVER,
        )
    });
    eprintln!("prune: {tried} crash points");
}

#[test]
fn a_repair_killed_after_any_change_can_be_run_again() {
    let mut w = world(2);
    // Lose one pack: repair rebuilds it from parity.
    let lost = w
        .objects
        .keys()
        .find(|k| k.ends_with(".pack"))
        .cloned()
        .unwrap();
    w.objects.remove(&lost);
    let tried = {
        let op = |repo: &Repository<CrashingStorage<MemoryStorage>>| {
            repo.repair(&maintenance(), &mut TestRng(51), &LockPolicy::NEVER)
        };
        let (done, total) = crash_at(&w, u64::MAX, op);
        assert!(done.is_none());
        for budget in 0..total {
            let (left, _) = crash_at(&w, budget, op);
            let left = left.unwrap();
            // A crashed repair is finished by running repair again; then everything holds.
            let repo = Repository::open(MemoryStorage::from_objects(left), Some(PASS)).unwrap();
            let report = repo
                .repair(&maintenance(), &mut TestRng(52), &DEAD)
                .unwrap_or_else(|e| panic!("repair after a crash at {budget} failed: {e}"));
            assert!(
                report.unrecoverable.is_empty(),
                "crash at {budget}: {report:?}"
            );
            check_after_crash(
                repo.storage().snapshot_objects(),
                &w.complete,
                &format!("repair, crash after {budget} of {total} changes"),
            );
        }
        total
    };
    eprintln!("repair: {tried} crash points");
}
