//! Ingest, restore and prune on several "hosts" sharing one repository, interleaved step by
//! step over in-memory storage (quinn-style: every interleaving is deterministic). Whatever the
//! hosts' clocks, pauses or lock judgements, every interleaving must end with every committed
//! snapshot restorable byte-identical; an ingest that lost data it reuses commits nothing and
//! says so with `ConcurrentModification`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use common::*;
use containerarchive_core::lock::{LockPolicy, DEFAULT_STALE_AFTER_MS};
use containerarchive_core::ops::prune::PruneOptions;
use containerarchive_core::ops::verify::VerifyLevel;
use containerarchive_core::ops::verify::VerifyOptions;
use containerarchive_core::retention::Policy;
use containerarchive_core::storage::StorageResult;
use containerarchive_core::*;

const PASS: &[u8] = b"pw";
const MINUTE: i64 = 60_000;

fn opts() -> InitOptions {
    InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    }
}

/// Storage that runs a hook (another host's whole operation) just before its `at`-th event:
/// a change (put, delete) or, with `reads`, a read of a pack.
struct Hooked<'a> {
    inner: &'a MemoryStorage,
    reads: bool,
    events: AtomicU64,
    at: AtomicU64,
    hook: Mutex<Option<Box<dyn FnOnce() + Send + 'a>>>,
}

impl<'a> Hooked<'a> {
    fn new(inner: &'a MemoryStorage, reads: bool) -> Self {
        Hooked {
            inner,
            reads,
            events: AtomicU64::new(0),
            at: AtomicU64::new(u64::MAX),
            hook: Mutex::new(None),
        }
    }

    fn arm(&self, at: u64, hook: Box<dyn FnOnce() + Send + 'a>) {
        self.events.store(0, Ordering::SeqCst);
        self.at.store(at, Ordering::SeqCst);
        *self.hook.lock().unwrap() = Some(hook);
    }

    fn tick(&self) {
        let n = self.events.fetch_add(1, Ordering::SeqCst);
        if n == self.at.load(Ordering::SeqCst) {
            let hook = self.hook.lock().unwrap().take();
            if let Some(h) = hook {
                h();
            }
        }
    }
}

impl Storage for Hooked<'_> {
    fn location(&self) -> String {
        "hooked".into()
    }
    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        if self.reads && key.starts_with("packs/data/") {
            self.tick();
        }
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        if self.reads && key.starts_with("packs/data/") {
            self.tick();
        }
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        if !self.reads {
            self.tick();
        }
        self.inner.put(key, data)
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        self.inner.list(prefix)
    }
    fn list_with_times(&self, prefix: &str) -> StorageResult<Vec<(String, u64, Option<i64>)>> {
        self.inner.list_with_times(prefix)
    }
    fn delete(&self, key: &str) -> StorageResult<()> {
        if !self.reads {
            self.tick();
        }
        self.inner.delete(key)
    }
    fn replace(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        self.inner.replace(key, data)
    }
}

fn host(name: &str, clock: &str) -> LockInfo {
    LockInfo {
        hostname: name.into(),
        pid: 7,
        created_at: clock.into(),
        refreshed_at: clock.into(),
        exclusive: false,
        operation: "ingest".into(),
        process: String::new(),
    }
}

/// The staleness rule of the CLI: 30 minutes without renewal on the storage's clock.
const STORAGE_CLOCK: LockPolicy<'static> = LockPolicy {
    stale_after_ms: DEFAULT_STALE_AFTER_MS,
    holder_gone: &nobody,
};

fn nobody(_: &LockInfo) -> bool {
    false
}

fn a_is_gone(l: &LockInfo) -> bool {
    l.hostname == "A"
}

fn b_is_gone(l: &LockInfo) -> bool {
    l.hostname == "B"
}

/// Host B believes host A's process is gone (a wrong judgement: A still runs).
const B_MISJUDGES_A: LockPolicy<'static> = LockPolicy {
    stale_after_ms: i64::MAX,
    holder_gone: &a_is_gone,
};

/// Host A believes host B's prune is gone.
const A_MISJUDGES_B: LockPolicy<'static> = LockPolicy {
    stale_after_ms: i64::MAX,
    holder_gone: &b_is_gone,
};

fn keep_last(n: i64) -> Policy {
    Policy {
        keep_last: n,
        ..Policy::default()
    }
}

fn prune_as<S: Storage>(repo: &Repository<S>, policy: StaleCheck<'_>, seed: u64) -> Result<()> {
    let mut info = host("B", "2026-03-01T00:00:00Z");
    info.operation = "prune".into();
    repo.prune(
        &retention(&keep_last(1), &BTreeMap::new()),
        PruneOptions::new().dry_run(false),
        &info,
        &mut TestRng(seed),
        policy,
    )
    .map(|_| ())
}

use containerarchive_core::lock::StaleCheck;

/// One snapshot with item "d" = `data`, tagged with its content's name, by `who` at `at`.
fn ingest_as<S: Storage + Send + Sync>(
    repo: &Repository<S>,
    who: &LockInfo,
    policy: StaleCheck<'_>,
    name: &str,
    data: &[u8],
    at: &str,
    seed: u64,
) -> Result<Snapshot> {
    let mut ing = repo.ingest(who, Box::new(TestRng(seed)), policy)?;
    ing.start_item("d", "raw")?;
    for piece in data.chunks(1 << 20) {
        ing.write(piece)?;
    }
    ing.finish_item()?;
    let tags = BTreeMap::from([("data".to_string(), name.to_string())]);
    ing.commit(&time(at), tags)
}

/// Every snapshot in `mem` restores byte-identical to the data its tag names; after the next
/// prune (which collects what an overtaken ingest left) verify finds nothing wrong.
fn assert_every_snapshot_restores(mem: &MemoryStorage, data: &HashMap<&str, Vec<u8>>, case: &str) {
    let repo = Repository::open(mem, Some(PASS)).unwrap();
    check_restores(&repo, data, case);
    let mut info = host("C", "t");
    info.operation = "prune".into();
    repo.prune(
        &retention(&keep_last(100), &BTreeMap::new()),
        PruneOptions::new().dry_run(false),
        &info,
        &mut TestRng(77),
        &STORAGE_CLOCK,
    )
    .unwrap_or_else(|e| panic!("{case}: the next prune: {e}"));
    check_restores(&repo, data, case);
    let report = repo
        .verify(VerifyOptions::new(VerifyLevel::Standard))
        .unwrap();
    assert!(report.ok, "{case}: verify: {:?}", report.errors);
}

fn check_restores<S: Storage>(repo: &Repository<S>, data: &HashMap<&str, Vec<u8>>, case: &str) {
    for snap in repo.list_snapshots(&SnapshotFilter::default()).unwrap() {
        let name = snap.manifest.tags["data"].as_str();
        let restored = restore(repo, &snap, "d")
            .unwrap_or_else(|e| panic!("{case}: snapshot {} ({name}) is broken: {e}", snap.id));
        assert!(
            restored == data[name],
            "{case}: snapshot {} restores other bytes",
            snap.id
        );
    }
}

fn is_concurrent(e: &Error) -> bool {
    matches!(e, Error::ConcurrentModification { .. })
}

/// Two nights already stored by B; A will back up `x` again (every chunk reused).
fn two_nights(mem: &MemoryStorage) -> HashMap<&'static str, Vec<u8>> {
    let b = init_on(mem, Some(PASS), &opts(), 1);
    let data = HashMap::from([("x", noise(6 << 20, 1)), ("y", noise(6 << 20, 2))]);
    let me = host("B", "2026-03-01T00:00:00Z");
    ingest_as(
        &b,
        &me,
        &STORAGE_CLOCK,
        "x",
        &data["x"],
        "2026-03-01T02:00:00Z",
        10,
    )
    .unwrap();
    ingest_as(
        &b,
        &me,
        &STORAGE_CLOCK,
        "y",
        &data["y"],
        "2026-03-02T02:00:00Z",
        11,
    )
    .unwrap();
    data
}

#[test]
fn a_live_ingest_lock_blocks_prune_whatever_the_hosts_clocks_say() {
    for skew in [
        "2026-03-02T02:00:00Z",
        "2026-03-01T02:00:00Z",
        "2026-03-03T02:00:00Z",
    ] {
        let mem = MemoryStorage::new();
        mem.set_clock(1_000 * MINUTE);
        let data = two_nights(&mem);
        let a = Repository::open(&mem, Some(PASS)).unwrap();
        let b = Repository::open(&mem, Some(PASS)).unwrap();
        // A's clock is a day off either way; its lock carries A's idea of the time.
        let mut ing = a
            .ingest(&host("A", skew), Box::new(TestRng(20)), &STORAGE_CLOCK)
            .unwrap();
        ing.start_item("d", "raw").unwrap();
        ing.write(&data["x"]).unwrap();
        mem.advance_clock(20 * MINUTE);
        let err = prune_as(&b, &STORAGE_CLOCK, 30).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{skew}: {err}");
        assert!(err.to_string().contains("host A"), "{err}");
        // Renewed at 20 minutes: still live at 45.
        ing.refresh_lock(skew).unwrap();
        mem.advance_clock(25 * MINUTE);
        let err = prune_as(&b, &STORAGE_CLOCK, 31).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{skew}: {err}");
        ing.finish_item().unwrap();
        let tags = BTreeMap::from([("data".to_string(), "x".to_string())]);
        ing.commit(&time("2026-03-03T02:00:00Z"), tags).unwrap();
        assert_every_snapshot_restores(&mem, &data, skew);
    }
}

/// Host A starts backing night x up again: its first 5 MiB are chunked and deduplicated
/// against night x's packs; the ingest is left open (A is "paused" until `finish_x`).
fn start_backing_up_x_again<'a>(
    a: &Repository<&'a MemoryStorage>,
    data: &HashMap<&str, Vec<u8>>,
) -> Ingest<&'a MemoryStorage> {
    let mut ing = a
        .ingest(
            &host("A", "2026-03-03T02:00:00Z"),
            Box::new(TestRng(20)),
            &STORAGE_CLOCK,
        )
        .unwrap();
    ing.start_item("d", "raw").unwrap();
    ing.write(&data["x"]).unwrap();
    ing
}

fn finish_x(mut ing: Ingest<&MemoryStorage>) -> Result<Snapshot> {
    ing.finish_item()?;
    let tags = BTreeMap::from([("data".to_string(), "x".to_string())]);
    ing.commit(&time("2026-03-03T02:00:00Z"), tags)
}

#[test]
fn a_paused_ingest_whose_lock_went_stale_commits_nothing_once_prune_took_its_data() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let a = Repository::open(&mem, Some(PASS)).unwrap();
    let b = Repository::open(&mem, Some(PASS)).unwrap();
    let ing = start_backing_up_x_again(&a, &data);
    // A is paused (SIGSTOP, a suspended VM) for three hours: its lock is stale by then.
    mem.advance_clock(180 * MINUTE);
    prune_as(&b, &STORAGE_CLOCK, 30).unwrap();
    // A resumes: it reused packs of night x, which prune deleted with that snapshot.
    let err = finish_x(ing).unwrap_err();
    assert!(is_concurrent(&err), "{err}");
    assert!(err.to_string().contains("nothing was committed"), "{err}");
    assert_every_snapshot_restores(&mem, &data, "paused");
    assert!(mem.list("snapshots/pending/").unwrap().is_empty());
    assert!(
        mem.list("locks/").unwrap().is_empty(),
        "the failed ingest released its lock"
    );
}

#[test]
fn an_ingest_whose_lock_was_removed_by_force_commits_nothing_once_prune_took_its_data() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let a = Repository::open(&mem, Some(PASS)).unwrap();
    let b = Repository::open(&mem, Some(PASS)).unwrap();
    let mut ing = start_backing_up_x_again(&a, &data);
    let report = b
        .remove_locks(true, &STORAGE_CLOCK, &host("B", "now"), &mut TestRng(40))
        .unwrap();
    assert_eq!(report.removed.len(), 1);
    prune_as(&b, &STORAGE_CLOCK, 30).unwrap();
    ing.refresh_lock("later").unwrap();
    assert!(ing.lock_lost(), "a renewal notices the lock was removed");
    let err = finish_x(ing).unwrap_err();
    assert!(is_concurrent(&err), "{err}");
    assert_every_snapshot_restores(&mem, &data, "forced");
}

/// Night x again with 2 MiB of new data at its end.
fn with_x2(mut data: HashMap<&'static str, Vec<u8>>) -> HashMap<&'static str, Vec<u8>> {
    let mut x2 = data["x"].clone();
    x2.extend(noise(2 << 20, 9));
    data.insert("x2", x2);
    data
}

/// A prune (that wrongly judges A's lock stale) runs whole before each change of A's ingest.
#[test]
fn a_prune_at_any_point_of_an_ingest_never_leaves_a_broken_snapshot() {
    prune_at_every_change_of_an_ingest(false);
}

/// The same, but the ingest is paused for hours at each change (its lock, temporary files and
/// pending manifest age past the stale limit on the storage's clock) before the prune runs.
#[test]
fn a_prune_after_a_pause_at_any_point_of_an_ingest_never_leaves_a_broken_snapshot() {
    prune_at_every_change_of_an_ingest(true);
}

fn prune_at_every_change_of_an_ingest(paused: bool) {
    let total = {
        let mem = MemoryStorage::new();
        let data = with_x2(two_nights(&mem));
        let hooked = Hooked::new(&mem, false);
        let a = Repository::open(&hooked, Some(PASS)).unwrap();
        ingest_as(
            &a,
            &host("A", "t"),
            &STORAGE_CLOCK,
            "x2",
            &data["x2"],
            "2026-03-03T02:00:00Z",
            20,
        )
        .unwrap();
        hooked.events.load(Ordering::SeqCst)
    };
    assert!(total >= 10, "{total} changes");
    let (mut committed, mut refused) = (0, 0);
    for at in 0..=total {
        let mem = MemoryStorage::new();
        let data = with_x2(two_nights(&mem));
        let b = Repository::open(&mem, Some(PASS)).unwrap();
        let pruned = Mutex::new(None);
        let hooked = Hooked::new(&mem, false);
        let a = Repository::open(&hooked, Some(PASS)).unwrap();
        hooked.arm(
            at,
            Box::new(|| {
                let outcome = if paused {
                    mem.advance_clock(180 * MINUTE);
                    prune_as(&b, &STORAGE_CLOCK, 30)
                } else {
                    prune_as(&b, &B_MISJUDGES_A, 30)
                };
                *pruned.lock().unwrap() = Some(outcome);
            }),
        );
        let result = ingest_as(
            &a,
            &host("A", "t"),
            &STORAGE_CLOCK,
            "x2",
            &data["x2"],
            "2026-03-03T02:00:00Z",
            20,
        );
        match &result {
            Ok(_) => committed += 1,
            Err(e) if is_concurrent(e) => refused += 1,
            Err(e) => panic!("change {at}: {e}"),
        }
        let outcome = pruned.lock().unwrap().take();
        match outcome {
            Some(Ok(())) | None => {}
            Some(Err(e)) if is_concurrent(&e) => {}
            Some(Err(e)) => panic!("change {at}: prune: {e}"),
        }
        assert_every_snapshot_restores(&mem, &data, &format!("prune before change {at}"));
    }
    assert!(
        committed > 0 && refused > 0,
        "{committed} committed, {refused} refused"
    );
}

/// An ingest (that wrongly judges the prune's lock stale) runs whole before each change of
/// a prune.
#[test]
fn an_ingest_at_any_point_of_a_prune_never_leaves_a_broken_snapshot() {
    let total = {
        let mem = MemoryStorage::new();
        two_nights(&mem);
        let hooked = Hooked::new(&mem, false);
        let b = Repository::open(&hooked, Some(PASS)).unwrap();
        prune_as(&b, &STORAGE_CLOCK, 30).unwrap();
        hooked.events.load(Ordering::SeqCst)
    };
    assert!(total >= 6, "{total} changes");
    let mut outcomes = BTreeMap::new();
    for at in 0..=total {
        let mem = MemoryStorage::new();
        let mut data = two_nights(&mem);
        data.insert("x2", data["x"].clone());
        let a = Repository::open(&mem, Some(PASS)).unwrap();
        let ingested = Mutex::new(None);
        let hooked = Hooked::new(&mem, false);
        let b = Repository::open(&hooked, Some(PASS)).unwrap();
        hooked.arm(
            at,
            Box::new(|| {
                // The newest snapshot: retention keeps it; it reuses night x's packs.
                *ingested.lock().unwrap() = Some(ingest_as(
                    &a,
                    &host("A", "t"),
                    &A_MISJUDGES_B,
                    "x2",
                    &data["x"],
                    "2026-03-03T02:00:00Z",
                    20,
                ))
            }),
        );
        let pruned = prune_as(&b, &STORAGE_CLOCK, 30);
        let ingest = ingested.lock().unwrap().take();
        let key = match (&pruned, &ingest) {
            (Ok(()), Some(Ok(_))) => "both done",
            (Err(e), Some(Ok(_))) if is_concurrent(e) => "prune withdrew",
            (Ok(()), Some(Err(e))) if is_concurrent(e) => "ingest withdrew",
            (Ok(()), None) => "no interleaving",
            (p, i) => panic!(
                "change {at}: prune {p:?}, ingest {:?}",
                i.as_ref().map(|r| r.as_ref().map(|s| s.id))
            ),
        };
        *outcomes.entry(key).or_insert(0) += 1;
        assert_every_snapshot_restores(&mem, &data, &format!("ingest before prune change {at}"));
    }
    assert!(outcomes.contains_key("both done"), "{outcomes:?}");
    assert!(
        outcomes.contains_key("prune withdrew") || outcomes.contains_key("ingest withdrew"),
        "{outcomes:?}"
    );
}

/// A restore that was planned against the old index runs while a prune rewrites and deletes
/// the packs it reads, at every pack read.
#[test]
fn a_restore_completes_byte_identical_while_prune_rewrites_its_packs() {
    let reads = {
        let mem = MemoryStorage::new();
        let data = two_nights(&mem);
        let hooked = Hooked::new(&mem, true);
        let r = Repository::open(&hooked, Some(PASS)).unwrap();
        let snap = r.get_snapshot("latest").unwrap();
        assert_eq!(restore(&r, &snap, "d").unwrap(), data["y"]);
        hooked.events.load(Ordering::SeqCst)
    };
    assert!(reads >= 2, "{reads} reads");
    for at in 0..reads {
        let mem = MemoryStorage::new();
        let mut data = two_nights(&mem);
        // Night z shares its first half with y: forgetting y leaves y's packs partly garbage,
        // so prune rewrites them (live blobs move to new packs) and deletes the rest.
        let mut z = data["y"][..3 << 20].to_vec();
        z.extend(noise(3 << 20, 3));
        let b = Repository::open(&mem, Some(PASS)).unwrap();
        ingest_as(
            &b,
            &host("B", "t"),
            &STORAGE_CLOCK,
            "z",
            &z,
            "2026-03-03T02:00:00Z",
            12,
        )
        .unwrap();
        data.insert("z", z.clone());
        let hooked = Hooked::new(&mem, true);
        let r = Repository::open(&hooked, Some(PASS)).unwrap();
        let snap = r.get_snapshot("latest").unwrap();
        let mut reader = r.item_reader(&snap, "d").unwrap();
        hooked.arm(
            at,
            Box::new(|| {
                prune_as(&b, &STORAGE_CLOCK, 30).unwrap();
            }),
        );
        let mut out = Vec::new();
        while let Some(batch) = reader
            .next_batch()
            .unwrap_or_else(|e| panic!("read {at}: {e}"))
        {
            for c in batch {
                out.extend_from_slice(&c);
            }
        }
        assert!(out == z, "read {at}: restored other bytes");
        assert_every_snapshot_restores(&mem, &data, &format!("prune at read {at}"));
    }
}

#[test]
fn a_long_lived_handle_notices_another_process_pruned_before_it_reuses_anything() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let service = Repository::open(&mem, Some(PASS)).unwrap();
    // The service has loaded the index (a restore, say) and keeps it.
    let first = service.list_snapshots(&SnapshotFilter::default()).unwrap()[0].clone();
    assert_eq!(restore(&service, &first, "d").unwrap(), data["x"]);
    // A cron job in another process forgets night x and collects its packs.
    let cron = Repository::open(&mem, Some(PASS)).unwrap();
    prune_as(&cron, &STORAGE_CLOCK, 30).unwrap();
    // The service backs x up again: it must store it, not "reuse" deleted chunks.
    let snap = ingest_as(
        &service,
        &host("A", "t"),
        &STORAGE_CLOCK,
        "x",
        &data["x"],
        "2026-03-03T02:00:00Z",
        21,
    )
    .unwrap();
    assert!(snap.manifest.new_chunks > 0, "{:?}", snap.manifest);
    let latest = service.get_snapshot("latest").unwrap();
    assert_eq!(restore(&service, &latest, "d").unwrap(), data["x"]);
    assert_every_snapshot_restores(&mem, &data, "long-lived");
}

const UNSERVED: &str =
    "locks/00000000000000000000000000000000000000000000000000000000000000f0.lock";

/// Storage where some lock files are listed but answer "not found" (an object store that lists
/// an object before it serves it).
struct ListedNotReadable<'a>(&'a MemoryStorage);

impl Storage for ListedNotReadable<'_> {
    fn location(&self) -> String {
        "eventual".into()
    }
    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        if key == UNSERVED {
            return Err(StorageError::NotFound(key.into()));
        }
        self.0.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        self.0.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        self.0.put(key, data)
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.0.delete(key)
    }
}

#[test]
fn a_lock_that_is_listed_but_cannot_be_read_blocks_prune() {
    let mem = MemoryStorage::new();
    two_nights(&mem);
    mem.put(UNSERVED, b"CA-LOCK1 not served yet").unwrap();
    let b = Repository::open(ListedNotReadable(&mem), Some(PASS)).unwrap();
    let err = prune_as(&b, &STORAGE_CLOCK, 30).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("cannot be read"), "{err}");
}

#[test]
fn a_repository_needing_an_unknown_feature_is_never_written_by_this_build() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let mut config: serde_json::Value =
        serde_json::from_slice(&mem.get("config.json").unwrap()).unwrap();
    assert_eq!(config["version"], 2);
    assert_eq!(config["features"]["write"][0], "deletion-notices");
    config["features"]["write"] = serde_json::json!(["deletion-notices", "from-the-future"]);
    mem.overwrite("config.json", serde_json::to_vec(&config).unwrap());
    // As another version wrote it: without a sealed copy that would still hold the old settings.
    let _ = mem.delete("copies/config");
    let repo = Repository::open(&mem, Some(PASS)).unwrap();
    // Reading still works…
    let latest = repo.get_snapshot("latest").unwrap();
    assert_eq!(restore(&repo, &latest, "d").unwrap(), data["y"]);
    // …writing does not, and nothing is written.
    let before = mem.snapshot_objects();
    let err = ingest_as(
        &repo,
        &host("A", "t"),
        &STORAGE_CLOCK,
        "x",
        &data["x"],
        "2026-03-03T02:00:00Z",
        20,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Unsupported(_)) && err.to_string().contains("from-the-future"),
        "{err}"
    );
    let err = prune_as(&repo, &STORAGE_CLOCK, 30).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert_eq!(before, mem.snapshot_objects());
    // A feature needed to read refuses even opening.
    config["features"]["read"] = serde_json::json!(["delta-blobs-v9"]);
    mem.overwrite("config.json", serde_json::to_vec(&config).unwrap());
    // As another version wrote it: without a sealed copy that would still hold the old settings.
    let _ = mem.delete("copies/config");
    let err = Repository::open(&mem, Some(PASS)).err().unwrap();
    assert!(
        matches!(err, Error::Unsupported(_)) && err.to_string().contains("delta-blobs-v9"),
        "{err}"
    );
}

#[test]
fn a_version_1_repository_is_upgraded_at_its_first_write_and_read_before() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let mut config: serde_json::Value =
        serde_json::from_slice(&mem.get("config.json").unwrap()).unwrap();
    config["version"] = serde_json::json!(1);
    config.as_object_mut().unwrap().remove("features");
    mem.overwrite("config.json", serde_json::to_vec(&config).unwrap());
    // As another version wrote it: without a sealed copy that would still hold the old settings.
    let _ = mem.delete("copies/config");
    let repo = Repository::open(&mem, Some(PASS)).unwrap();
    assert_eq!(
        repo.list_snapshots(&SnapshotFilter::default())
            .unwrap()
            .len(),
        2
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&mem.get("config.json").unwrap()).unwrap();
    assert_eq!(stored["version"], 1, "reading does not upgrade");
    ingest_as(
        &repo,
        &host("A", "t"),
        &STORAGE_CLOCK,
        "x",
        &data["x"],
        "2026-03-03T02:00:00Z",
        20,
    )
    .unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&mem.get("config.json").unwrap()).unwrap();
    assert_eq!(stored["version"], 2);
    assert_eq!(
        stored["features"]["write"],
        serde_json::json!(["deletion-notices", "parity-dir"])
    );
    assert_eq!(stored["id"], config["id"], "settings are kept");
    assert_every_snapshot_restores(&mem, &data, "upgraded");
}

/// A prune that died (or is paused) after announcing its deletions, before its last look: the
/// packs it named may hold the only copy of blobs a snapshot needs. Nobody may remove its
/// notice while those packs exist; the next prune copies their live blobs out and deletes them.
#[test]
fn a_dead_prunes_notice_stays_until_a_later_prune_has_moved_and_deleted_its_packs() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let repo = Repository::open(&mem, Some(PASS)).unwrap();
    let packs: std::collections::BTreeSet<Id> = mem
        .list("packs/data/")
        .unwrap()
        .into_iter()
        .filter_map(|(k, _)| Id::from_hex(k.rsplit('/').next()?.strip_suffix(".pack")?))
        .collect();
    let notice = containerarchive_core::notice::write_notice(
        &mem,
        repo.keys(),
        "locks/dead.lock",
        &packs,
        &mut TestRng(90),
    )
    .unwrap();
    // Repair and reindex leave it: its packs are still there.
    let mut info = host("B", "t");
    info.operation = "repair".into();
    repo.repair(&info, &mut TestRng(91), &STORAGE_CLOCK)
        .unwrap();
    repo.reindex(&info, &mut TestRng(92), &STORAGE_CLOCK)
        .unwrap();
    assert!(
        mem.get(&notice).is_ok(),
        "the notice outlives repair and reindex"
    );
    // An ingest does not reuse announced packs: it stores the chunks again.
    let again = ingest_as(
        &repo,
        &host("A", "t"),
        &STORAGE_CLOCK,
        "x",
        &data["x"],
        "2026-03-03T02:00:00Z",
        20,
    )
    .unwrap();
    assert_eq!(again.manifest.reused_chunks, 0, "{:?}", again.manifest);
    // The next prune keeps every snapshot, but moves every live blob out of the announced
    // packs, deletes them, and only then the notice.
    repo.prune(
        &retention(&keep_last(100), &BTreeMap::new()),
        PruneOptions::new().dry_run(false),
        &info,
        &mut TestRng(93),
        &STORAGE_CLOCK,
    )
    .unwrap();
    assert!(
        mem.get(&notice).is_err(),
        "the notice is gone with its packs"
    );
    for p in &packs {
        assert!(mem
            .get(&format!(
                "packs/data/{}/{}.pack",
                &p.to_hex()[..2],
                p.to_hex()
            ))
            .is_err());
    }
    assert_every_snapshot_restores(&mem, &data, "dead prune's notice");
}

/// A prune stopped (a signal) in the middle of its deletions keeps its notice: an ingest on a
/// handle that loaded the index before the prune must not commit a snapshot that reuses a pack
/// left half-deleted; the next prune finishes the job.
#[test]
fn a_prune_stopped_while_deleting_keeps_its_notice_until_the_next_prune_finishes() {
    let mem = MemoryStorage::new();
    let data = two_nights(&mem);
    let service = Repository::open(&mem, Some(PASS)).unwrap();
    let first = service.list_snapshots(&SnapshotFilter::default()).unwrap()[0].clone();
    assert_eq!(restore(&service, &first, "d").unwrap(), data["x"]);
    let cron = Repository::open(&mem, Some(PASS)).unwrap();
    let mut info = host("B", "t");
    info.operation = "prune".into();
    let mut deleted = 0;
    let err = cron
        .prune(
            &retention(&keep_last(1), &BTreeMap::new()),
            PruneOptions::new().on_progress(&mut |p| {
                if p.message.starts_with("deleted") {
                    deleted += 1;
                    if deleted == 2 {
                        return Err(Error::Cancelled("SIGTERM".into()));
                    }
                }
                Ok(())
            }),
            &info,
            &mut TestRng(30),
            &STORAGE_CLOCK,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled(_)), "{err}");
    assert_eq!(mem.list("deleting/").unwrap().len(), 1, "the notice stays");
    assert!(
        mem.list("locks/").unwrap().is_empty(),
        "the lock is released"
    );
    // The service's index still names night x's packs, some of them gone.
    match ingest_as(
        &service,
        &host("A", "t"),
        &STORAGE_CLOCK,
        "x",
        &data["x"],
        "2026-03-03T02:00:00Z",
        21,
    ) {
        Ok(snap) => assert_eq!(restore(&service, &snap, "d").unwrap(), data["x"]),
        Err(e) => assert!(is_concurrent(&e), "{e}"),
    }
    cron.prune(
        &retention(&keep_last(100), &BTreeMap::new()),
        PruneOptions::new().dry_run(false),
        &info,
        &mut TestRng(3100),
        &STORAGE_CLOCK,
    )
    .unwrap();
    assert!(mem.list("deleting/").unwrap().is_empty());
    assert_every_snapshot_restores(&mem, &data, "stopped prune");
}
