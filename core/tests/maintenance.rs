//! Breaking repositories on purpose: what verify finds, what repair saves, what prune frees.

mod common;

use containerarchive_core::lock::LockPolicy;
use containerarchive_core::ops::prune::PruneOptions;
use containerarchive_core::ops::verify::VerifyOptions;
use std::collections::{BTreeMap, BTreeSet};

use common::*;
use containerarchive_core::ops::verify::{VerifyLevel, VerifyReport};
use containerarchive_core::parity::load_groups;
use containerarchive_core::retention::Policy;
use containerarchive_core::*;

const PASS: &[u8] = b"maintenance";

/// An encrypted in-memory repository with 1 MiB packs (so a few MiB make several packs).
fn mib_pack_repo(seed: u64) -> Repository<MemoryStorage> {
    let opts = InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    };
    memory_repo(Some(PASS), &opts, seed)
}

fn repo_with_two_groups() -> (
    Repository<MemoryStorage>,
    Snapshot,
    Vec<u8>,
    Snapshot,
    Vec<u8>,
) {
    let repo = mib_pack_repo(3);
    let big = noise(26 << 20, 1);
    let a = ingest_items(&repo, &[("big", &big)], "2026-01-01T00:00:00Z", &[]).unwrap();
    let small = noise(4 << 20, 2);
    let b = ingest_items(&repo, &[("small", &small)], "2026-01-02T00:00:00Z", &[]).unwrap();
    (repo, a, big, b, small)
}

fn verify(repo: &Repository<MemoryStorage>, level: VerifyLevel) -> VerifyReport {
    let mut seen = 0;
    let report = repo
        .verify(VerifyOptions::new(level).on_error(&mut |_| seen += 1))
        .unwrap();
    assert_eq!(
        seen,
        report.errors.len(),
        "every finding fires the callback"
    );
    report
}

fn named_packs(report: &VerifyReport) -> BTreeSet<String> {
    report
        .errors
        .iter()
        .filter_map(|f| f.pack.clone())
        .collect()
}

fn pack_keys(repo: &Repository<MemoryStorage>) -> Vec<String> {
    repo.storage()
        .snapshot_objects()
        .into_keys()
        .filter(|k| k.ends_with(".pack"))
        .collect()
}

fn id_of(key: &str) -> String {
    key.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".pack")
        .to_string()
}

/// Data packs of the first (full) group and of the trailing group.
fn groups(repo: &Repository<MemoryStorage>) -> (Vec<String>, Vec<String>) {
    let (mut groups, bad) = load_groups(repo.storage(), repo.keys()).unwrap();
    assert!(bad.is_empty());
    groups.sort_by_key(|g| std::cmp::Reverse(g.desc.members.len()));
    assert_eq!(groups.len(), 2, "{groups:?}");
    let ids = |i: usize| {
        groups[i]
            .desc
            .members
            .iter()
            .map(|m| m.pack.to_hex())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(0).len(), 20);
    (ids(0), ids(1))
}

fn maintenance_lock() -> LockInfo {
    let mut l = lock_info();
    l.operation = "repair".into();
    l
}

#[test]
fn a_fresh_repository_verifies_at_every_level_and_every_pack_is_protected() {
    let (repo, ..) = repo_with_two_groups();
    let (full, trailing) = groups(&repo);
    assert_eq!(full.len() + trailing.len(), pack_keys(&repo).len());
    assert!(pack_keys(&repo).len() >= 25);
    for level in [VerifyLevel::Quick, VerifyLevel::Standard, VerifyLevel::Full] {
        let r = verify(&repo, level);
        assert!(r.ok, "{level:?}: {:?}", r.errors);
        assert_eq!(r.stats.snapshots_checked, 2);
        assert!(r.stats.packs_checked >= 25);
        assert!(r.stats.chunks_checked > 20);
    }
}

#[test]
fn a_deleted_pack_in_either_group_is_reported_and_rebuilt_byte_identical() {
    let (repo, a, big, b, small) = repo_with_two_groups();
    let (full, trailing) = groups(&repo);
    for victim in [&full[7], &trailing[trailing.len() - 1]] {
        let key = pack_keys(&repo)
            .into_iter()
            .find(|k| id_of(k) == *victim)
            .unwrap();
        let before = repo.storage().get(&key).unwrap();
        repo.storage().delete(&key).unwrap();
        let r = verify(&repo, VerifyLevel::Quick);
        assert!(!r.ok);
        assert_eq!(
            named_packs(&r),
            BTreeSet::from([victim.clone()]),
            "{:?}",
            r.errors
        );
        assert!(r.errors.iter().any(|f| f.kind == "pack_missing"));
        let rep = repo
            .repair(&maintenance_lock(), &mut TestRng(77), &LockPolicy::NEVER)
            .unwrap();
        assert_eq!(
            rep.packs_repaired
                .iter()
                .map(Id::to_hex)
                .collect::<Vec<_>>(),
            vec![victim.clone()]
        );
        assert!(rep.unrecoverable.is_empty());
        assert_eq!(
            repo.storage().get(&key).unwrap(),
            before,
            "rebuilt byte-identical"
        );
        let r = verify(&repo, VerifyLevel::Full);
        assert!(r.ok, "{:?}", r.errors);
    }
    assert_eq!(restore(&repo, &a, "big").unwrap(), big);
    assert_eq!(restore(&repo, &b, "small").unwrap(), small);
}

#[test]
fn a_flipped_byte_is_named_by_standard_and_full_and_repaired() {
    let (repo, a, big, ..) = repo_with_two_groups();
    let (full, _) = groups(&repo);
    let key = pack_keys(&repo)
        .into_iter()
        .find(|k| id_of(k) == full[3])
        .unwrap();
    let mut bytes = repo.storage().get(&key).unwrap();
    bytes[5000] ^= 0x01;
    repo.storage().overwrite(&key, bytes);
    assert!(
        verify(&repo, VerifyLevel::Quick).ok,
        "quick does not read pack contents"
    );
    let r = verify(&repo, VerifyLevel::Standard);
    assert_eq!(named_packs(&r), BTreeSet::from([full[3].clone()]));
    assert!(r.errors.iter().any(|f| f.kind == "pack_checksum"));
    let r = verify(&repo, VerifyLevel::Full);
    let corrupt: Vec<_> = r
        .errors
        .iter()
        .filter(|f| f.kind == "chunk_corrupt")
        .collect();
    assert_eq!(corrupt.len(), 1, "{:?}", r.errors);
    assert!(corrupt[0].chunk.is_some());
    assert_eq!(
        named_packs(&r),
        BTreeSet::from([full[3].clone()]),
        "{:?}",
        r.errors
    );
    let rep = repo
        .repair(&maintenance_lock(), &mut TestRng(78), &LockPolicy::NEVER)
        .unwrap();
    assert_eq!(rep.packs_repaired.len(), 1);
    let r = verify(&repo, VerifyLevel::Full);
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(restore(&repo, &a, "big").unwrap(), big);
}

#[test]
fn two_losses_in_one_group_are_unrecoverable_and_name_the_affected_snapshots() {
    let (repo, a, _, b, small) = repo_with_two_groups();
    let (full, _) = groups(&repo);
    for victim in [&full[0], &full[1]] {
        let key = pack_keys(&repo)
            .into_iter()
            .find(|k| id_of(k) == *victim)
            .unwrap();
        repo.storage().delete(&key).unwrap();
    }
    let rep = repo
        .repair(&maintenance_lock(), &mut TestRng(79), &LockPolicy::NEVER)
        .unwrap();
    assert!(rep.packs_repaired.is_empty());
    let lost: BTreeSet<String> = rep.unrecoverable.iter().map(|u| u.pack.to_hex()).collect();
    assert_eq!(lost, BTreeSet::from([full[0].clone(), full[1].clone()]));
    for u in &rep.unrecoverable {
        assert_eq!(u.snapshots, vec![a.id], "only the big snapshot needs them");
    }
    assert_eq!(restore(&repo, &b, "small").unwrap(), small);
    assert!(restore(&repo, &a, "big").is_err());
    // Re-running repair is safe and reports the same.
    let again = repo
        .repair(&maintenance_lock(), &mut TestRng(80), &LockPolicy::NEVER)
        .unwrap();
    assert_eq!(again.unrecoverable.len(), 2);
}

#[test]
fn a_damaged_parity_shard_is_named_by_standard_and_full_verify_and_rewritten_by_repair() {
    let (repo, ..) = repo_with_two_groups();
    let key = repo
        .storage()
        .snapshot_objects()
        .into_keys()
        .find(|k| k.ends_with(".parity"))
        .unwrap();
    let mut bytes = repo.storage().get(&key).unwrap();
    bytes[10] ^= 0x80;
    repo.storage().overwrite(&key, bytes);
    // Standard reads every shard and checks it against its id: a nightly standard verify
    // reports a group that could no longer rebuild a lost pack.
    for level in [VerifyLevel::Standard, VerifyLevel::Full] {
        let r = verify(&repo, level);
        assert_eq!(r.errors.len(), 1, "{level:?}: {:?}", r.errors);
        assert_eq!(r.errors[0].kind, "parity_mismatch");
        assert!(r.errors[0].message.contains(
            key.trim_start_matches("parity/")
                .trim_end_matches(".parity")
        ));
    }
    let rep = repo
        .repair(&maintenance_lock(), &mut TestRng(90), &LockPolicy::NEVER)
        .unwrap();
    assert_eq!(rep.groups_written, 1);
    let r = verify(&repo, VerifyLevel::Full);
    assert!(r.ok, "{:?}", r.errors);
}

#[test]
fn reindex_restores_function_after_every_index_file_and_idx_is_gone() {
    let (repo, a, big, b, small) = repo_with_two_groups();
    for key in repo.storage().snapshot_objects().into_keys() {
        if key.ends_with(".idx") || key.starts_with("index/") {
            repo.storage().delete(&key).unwrap();
        }
    }
    let fresh = Repository::open(repo.storage(), Some(PASS)).unwrap();
    assert!(restore(&fresh, &a, "big").is_err());
    let r = fresh
        .reindex(&maintenance_lock(), &mut TestRng(81), &LockPolicy::NEVER)
        .unwrap();
    assert_eq!(r.idx_rebuilt.len(), pack_keys(&repo).len());
    assert!(r.unreadable_packs.is_empty());
    assert_eq!(restore(&fresh, &a, "big").unwrap(), big);
    assert_eq!(restore(&fresh, &b, "small").unwrap(), small);
    let v = fresh.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(v.ok, "{:?}", v.errors);
}

fn on_disk(repo: &Repository<MemoryStorage>) -> i64 {
    objects_but_locks(repo)
        .values()
        .map(|v| v.len() as i64)
        .sum()
}

#[test]
fn prune_removes_what_the_policy_drops_and_frees_exactly_what_it_reports() {
    let repo = mib_pack_repo(9);
    let shared = noise(2 << 20, 100);
    let mut snaps = Vec::new();
    for day in 1..=6u64 {
        let mut data = shared.clone();
        data.extend_from_slice(&noise(3 << 20, day));
        let s = ingest_items(
            &repo,
            &[("db", &data)],
            &format!("2026-03-0{day}T12:00:00Z"),
            &[],
        )
        .unwrap();
        snaps.push((s, data));
    }
    let policy = Policy {
        keep_last: 2,
        ..Policy::default()
    };
    let none = BTreeMap::new();
    let before = on_disk(&repo);
    let dry = repo
        .prune(
            &retention(&policy, &none),
            PruneOptions::new().dry_run(true),
            &maintenance_lock(),
            &mut TestRng(10),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert_eq!(on_disk(&repo), before, "a dry run changes nothing");
    let real = repo
        .prune(
            &retention(&policy, &none),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(11),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert_eq!(real.kept, vec![snaps[5].0.id, snaps[4].0.id]);
    assert_eq!(real.removed.len(), 4);
    assert!(real.removed_packs > 0 && real.freed_bytes > 0);
    assert_eq!(
        dry.freed_bytes, real.freed_bytes,
        "dry run {dry:?} vs real {real:?}"
    );
    assert_eq!(PruneLike::from(&dry), PruneLike::from(&real));
    assert_eq!(before - on_disk(&repo), real.freed_bytes);
    for (s, data) in &snaps[4..] {
        assert_eq!(restore(&repo, s, "db").unwrap(), *data);
    }
    let r = repo.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(
        repo.list_snapshots(&SnapshotFilter::default())
            .unwrap()
            .len(),
        2
    );
    // Pruning again with the same policy removes nothing more and keeps everything restorable.
    let again = repo
        .prune(
            &retention(&policy, &none),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(12),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert!(again.removed.is_empty());
    assert!(
        repo.verify(VerifyOptions::new(VerifyLevel::Full))
            .unwrap()
            .ok
    );
}

#[derive(Debug, PartialEq)]
struct PruneLike(Vec<Id>, Vec<Id>, u64, u64, u64);

impl From<&containerarchive_core::ops::prune::PruneReport> for PruneLike {
    fn from(r: &containerarchive_core::ops::prune::PruneReport) -> Self {
        PruneLike(
            r.kept.clone(),
            r.removed.clone(),
            r.removed_packs,
            r.rewritten_packs,
            r.new_packs,
        )
    }
}

#[test]
fn prune_without_a_rule_is_refused() {
    let repo = memory_repo(None, &fast_kdf(), 1);
    ingest_items(&repo, &[("d", b"x")], "2026-01-01T00:00:00Z", &[]).unwrap();
    let err = repo
        .prune(
            &retention(&Policy::default(), &BTreeMap::new()),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(2),
            &LockPolicy::NEVER,
        )
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(
        repo.list_snapshots(&SnapshotFilter::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn prune_with_tags_only_considers_those_snapshots() {
    let repo = memory_repo(None, &fast_kdf(), 1);
    let a1 = ingest_items(
        &repo,
        &[("d", b"a1")],
        "2026-01-01T00:00:00Z",
        &[("db", "a")],
    )
    .unwrap();
    let a2 = ingest_items(
        &repo,
        &[("d", b"a2")],
        "2026-01-02T00:00:00Z",
        &[("db", "a")],
    )
    .unwrap();
    let b1 = ingest_items(
        &repo,
        &[("d", b"b1")],
        "2026-01-01T00:00:00Z",
        &[("db", "b")],
    )
    .unwrap();
    let tags = BTreeMap::from([("db".to_string(), "a".to_string())]);
    let policy = Policy {
        keep_last: 1,
        ..Policy::default()
    };
    let r = repo
        .prune(
            &retention(&policy, &tags),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(2),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert_eq!((r.kept, r.removed), (vec![a2.id], vec![a1.id]));
    let left: Vec<Id> = repo
        .list_snapshots(&SnapshotFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&b1.id) && left.contains(&a2.id));
    assert_eq!(restore(&repo, &b1, "d").unwrap(), b"b1");
}

#[test]
fn prune_is_refused_while_an_ingest_holds_its_lock_and_stale_locks_can_be_removed() {
    let repo = memory_repo(None, &fast_kdf(), 1);
    ingest_items(&repo, &[("d", b"x")], "2026-01-01T00:00:00Z", &[]).unwrap();
    let mut ing = repo
        .ingest(&lock_info(), Box::new(TestRng(5)), &LockPolicy::NEVER)
        .unwrap();
    ing.start_item("d", "raw").unwrap();
    ing.refresh_lock("2026-01-01T00:05:00Z").unwrap();
    let policy = Policy {
        keep_last: 1,
        ..Policy::default()
    };
    let err = repo
        .prune(
            &retention(&policy, &BTreeMap::new()),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(6),
            &LockPolicy::NEVER,
        )
        .err()
        .unwrap();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(
        repo.storage().list("locks/").unwrap().len(),
        1,
        "the refreshed lock replaced the old one"
    );
    // The ingest's process "died": its lock is stale and unlock removes it; force removes all.
    let unlocker = maintenance_lock();
    let report = repo
        .remove_locks(false, &LockPolicy::NEVER, &unlocker, &mut TestRng(70))
        .unwrap();
    assert_eq!((report.removed.len(), report.kept.len()), (0, 1));
    assert!(report.kept[0].1.contains("ingest"), "{:?}", report.kept);
    let gone = LockPolicy {
        stale_after_ms: i64::MAX,
        holder_gone: &|l| l.refreshed_at == "2026-01-01T00:05:00Z",
    };
    let report = repo
        .remove_locks(false, &gone, &unlocker, &mut TestRng(71))
        .unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(
        report.removed[0].1.contains("is gone"),
        "{:?}",
        report.removed
    );
    std::mem::forget(ing);
    let _held = repo
        .lock(&lock_info(), &mut TestRng(7), &LockPolicy::NEVER)
        .unwrap();
    let report = repo
        .remove_locks(true, &LockPolicy::NEVER, &unlocker, &mut TestRng(72))
        .unwrap();
    assert_eq!(report.removed.len(), 1);
    repo.prune(
        &retention(&policy, &BTreeMap::new()),
        PruneOptions::new().dry_run(false),
        &maintenance_lock(),
        &mut TestRng(8),
        &LockPolicy::NEVER,
    )
    .unwrap();
}

#[test]
fn forget_removes_exactly_the_named_snapshots_and_frees_only_their_data() {
    let repo = mib_pack_repo(21);
    let shared = noise(1 << 20, 200);
    let mut snaps = Vec::new();
    for day in 1..=4u64 {
        let mut data = shared.clone();
        data.extend_from_slice(&noise(2 << 20, 200 + day));
        let s = ingest_items(
            &repo,
            &[("db", &data)],
            &format!("2026-03-0{day}T12:00:00Z"),
            &[],
        )
        .unwrap();
        snaps.push((s, data));
    }
    let forget = |refs: &[String], dry: bool, seed: u64| {
        repo.forget(
            refs,
            PruneOptions::new().dry_run(dry),
            &maintenance_lock(),
            &mut TestRng(seed),
            &LockPolicy::NEVER,
        )
    };
    // `latest`, nothing, unknown and ambiguous references change nothing.
    let before = on_disk(&repo);
    assert!(matches!(
        forget(&["latest".into()], false, 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        forget(&[], false, 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        forget(&["ffffffffffff".into()], false, 3),
        Err(Error::SnapshotNotFound(_))
    ));
    assert!(matches!(
        forget(&["".into()], false, 4),
        Err(Error::SnapshotNotFound(_))
    ));
    assert_eq!(on_disk(&repo), before);
    // A dry run reports and changes nothing; a prefix names a snapshot.
    let second = snaps[1].0.id.to_hex();
    let dry = forget(&[second[..10].to_string()], true, 5).unwrap();
    assert_eq!(dry.removed, vec![snaps[1].0.id]);
    assert!(dry.dry_run && dry.groups.is_empty());
    assert_eq!(on_disk(&repo), before);
    let real = forget(
        &[second[..10].to_string(), snaps[3].0.id.to_hex()],
        false,
        6,
    )
    .unwrap();
    assert_eq!(real.removed, vec![snaps[3].0.id, snaps[1].0.id]);
    assert!(real.freed_bytes > 0);
    assert_eq!(on_disk(&repo), before - real.freed_bytes);
    let left: Vec<Id> = repo
        .list_snapshots(&SnapshotFilter::default())
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![snaps[0].0.id, snaps[2].0.id]);
    for (s, data) in [&snaps[0], &snaps[2]] {
        assert_eq!(&restore(&repo, s, "db").unwrap(), data);
    }
    assert!(
        repo.verify(VerifyOptions::new(VerifyLevel::Full))
            .unwrap()
            .ok
    );
}

#[test]
fn prune_applies_the_policy_per_series_and_refuses_to_wipe_one_out() {
    let repo = mib_pack_repo(22);
    for day in 1..=10u64 {
        for (name, minute, seed) in [("shop.sql", "00", 300), ("crm.sql", "05", 400)] {
            let mut ing = repo
                .ingest(
                    &lock_info(),
                    Box::new(TestRng(seed + day)),
                    &LockPolicy::NEVER,
                )
                .unwrap();
            ing.set_host("db1").unwrap();
            ing.start_item(name, "raw").unwrap();
            ing.write(&noise(64 << 10, seed + day)).unwrap();
            let tags =
                BTreeMap::from([("db".to_string(), name.trim_end_matches(".sql").to_string())]);
            ing.commit(&time(&format!("2026-03-{day:02}T02:{minute}:00Z")), tags)
                .unwrap();
        }
    }
    let policy = Policy {
        keep_daily: 7,
        keep_weekly: 4,
        ..Policy::default()
    };
    let r = repo
        .prune(
            &retention(&policy, &BTreeMap::new()),
            PruneOptions::new().dry_run(true),
            &maintenance_lock(),
            &mut TestRng(1),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert_eq!(r.groups.len(), 2);
    assert!(r
        .groups
        .iter()
        .all(|g| g.kept.len() == 8 && g.removed.len() == 2));
    assert_eq!(r.groups[1].key.host, Some(Some("db1".to_string())));
    // The host filter: only db1's snapshots, none of another host's.
    let mut other = retention(&policy, &BTreeMap::new());
    other.filter.host = Some("db2".into());
    let r = repo
        .prune(
            &other,
            PruneOptions::new().dry_run(true),
            &maintenance_lock(),
            &mut TestRng(2),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert!(r.removed.is_empty() && r.groups.is_empty());
    // A keep-tag policy that keeps nothing of one series is refused, naming the series.
    let tag_only = Policy {
        keep_tags: vec![retention::parse_tag_set("db=shop").unwrap()],
        ..Policy::default()
    };
    let before = on_disk(&repo);
    let e = repo
        .prune(
            &retention(&tag_only, &BTreeMap::new()),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(3),
            &LockPolicy::NEVER,
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    assert!(e.to_string().contains("crm.sql"), "{e}");
    assert_eq!(on_disk(&repo), before);
    // Old snapshots read as host unknown; the manifest of a new one names its host.
    assert_eq!(
        repo.get_snapshot("latest")
            .unwrap()
            .manifest
            .host
            .as_deref(),
        Some("db1")
    );
}

fn objects_but_locks(repo: &Repository<MemoryStorage>) -> BTreeMap<String, Vec<u8>> {
    repo.storage()
        .snapshot_objects()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("locks/"))
        .collect()
}

fn data_packs(repo: &Repository<MemoryStorage>) -> usize {
    objects_but_locks(repo)
        .keys()
        .filter(|k| k.ends_with(".pack"))
        .count()
}

#[test]
fn prune_merges_many_small_packs_and_then_reaches_a_fixed_point() {
    let repo = mib_pack_repo(23);
    // Tiny items (under 1 KB), one pack each; a few snapshots share data.
    let mut snaps = Vec::new();
    for i in 0..24u64 {
        let data = format!("row {}\n", i % 20).repeat(30).into_bytes();
        let s = ingest_items(
            &repo,
            &[("db.sql", &data)],
            &format!("2026-03-01T{i:02}:00:00Z"),
            &[],
        )
        .unwrap();
        snaps.push((s, data));
    }
    let small_packs = data_packs(&repo);
    assert!(small_packs >= 20, "{small_packs}");
    let policy = Policy {
        keep_last: 20,
        ..Policy::default()
    };
    let prune = |seed: u64| {
        repo.prune(
            &retention(&policy, &BTreeMap::new()),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(seed),
            &LockPolicy::NEVER,
        )
        .unwrap()
    };
    let first = prune(1);
    assert_eq!(first.removed.len(), 4);
    assert!(first.merged_packs >= 10, "{first:?}");
    assert_eq!(data_packs(&repo), 1, "the live tiny blobs fit one pack");
    for (s, data) in &snaps[4..] {
        assert_eq!(&restore(&repo, s, "db.sql").unwrap(), data);
    }
    assert!(
        repo.verify(VerifyOptions::new(VerifyLevel::Full))
            .unwrap()
            .ok
    );
    // Nothing new: the second prune writes, rewrites and deletes nothing; nor does a third.
    for seed in [2, 3] {
        let before = objects_but_locks(&repo);
        let again = prune(seed);
        assert_eq!(
            (
                again.removed.len(),
                again.removed_packs,
                again.rewritten_packs,
                again.new_packs,
                again.freed_bytes
            ),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(
            objects_but_locks(&repo),
            before,
            "prune {seed} changed the repository"
        );
    }
}

#[test]
fn a_pack_of_small_live_blobs_is_not_rewritten_for_its_overhead() {
    let repo = mib_pack_repo(24);
    ingest_items(&repo, &[("a", b"tiny")], "2026-03-01T00:00:00Z", &[]).unwrap();
    let policy = Policy {
        keep_last: 1,
        ..Policy::default()
    };
    let before = objects_but_locks(&repo);
    let r = repo
        .prune(
            &retention(&policy, &BTreeMap::new()),
            PruneOptions::new().dry_run(false),
            &maintenance_lock(),
            &mut TestRng(5),
            &LockPolicy::NEVER,
        )
        .unwrap();
    assert_eq!((r.removed_packs, r.rewritten_packs, r.new_packs), (0, 0, 0));
    assert_eq!(objects_but_locks(&repo), before);
}

#[test]
fn a_pack_moved_to_a_name_we_do_not_write_is_missing_for_verify_and_rebuilt_by_repair() {
    let (repo, ..) = repo_with_two_groups();
    let (full, _) = groups(&repo);
    let victim = &full[3];
    let key = pack_keys(&repo)
        .into_iter()
        .find(|k| id_of(k) == *victim)
        .unwrap();
    let bytes = repo.storage().get(&key).unwrap();
    let name = key.rsplit('/').next().unwrap();
    // Another fan-out folder, and the same folder with upper-case hex: neither is where a
    // restore reads, so verify must not count the pack as present.
    for moved in [
        format!("packs/data/zz/{name}"),
        key.replace(name, &name.replace(".pack", "").to_uppercase()) + ".pack",
    ] {
        repo.storage().delete(&key).unwrap();
        repo.storage().put(&moved, &bytes).unwrap();
        for level in [VerifyLevel::Quick, VerifyLevel::Full] {
            let r = verify(&repo, level);
            assert!(
                r.errors
                    .iter()
                    .any(|f| f.kind == "pack_missing" && f.pack.as_deref() == Some(victim)),
                "{moved} at {level:?}: {:?}",
                r.errors
            );
        }
        let rep = repo
            .repair(&maintenance_lock(), &mut TestRng(78), &LockPolicy::NEVER)
            .unwrap();
        assert_eq!(rep.packs_repaired.len(), 1, "{moved}");
        assert!(
            rep.foreign_files.contains(&moved),
            "{moved}: {:?}",
            rep.foreign_files
        );
        assert_eq!(repo.storage().get(&key).unwrap(), bytes);
        assert!(verify(&repo, VerifyLevel::Full).ok);
        repo.storage().delete(&moved).unwrap();
    }
}

#[test]
fn a_deleted_parity_shard_is_reported_after_the_second_look() {
    // ParityMissing waits for a second look (a group an ingest extends meanwhile replaces its
    // shard); a shard that is really gone must still be reported.
    let (repo, ..) = repo_with_two_groups();
    let shard = repo
        .storage()
        .list("parity/")
        .unwrap()
        .into_iter()
        .find(|(k, _)| layout::is(layout::Kind::Parity, k))
        .expect("a parity shard")
        .0;
    repo.storage().delete(&shard).unwrap();
    let report = verify(&repo, VerifyLevel::Standard);
    assert!(
        report.errors.iter().any(|f| f.kind == "parity_missing"),
        "{:?}",
        report.errors
    );
}

/// Prune and forget compute new parity over the packs that survive in a group they change. A
/// damaged survivor must stop them before anything is deleted: parity over it would make the
/// damage permanent, where the old group can still rebuild it. After repair, they go through.
#[test]
fn prune_and_forget_never_compute_parity_over_a_damaged_pack() {
    for (how, damage) in [("forget", 0usize), ("prune", 1), ("forget", 2)] {
        let repo = mib_pack_repo(31);
        let mut snaps = Vec::new();
        for day in 1..=4u64 {
            let data = noise(3 << 20, 300 + day);
            let at = format!("2026-04-0{day}T00:00:00Z");
            snaps.push((
                ingest_items(&repo, &[("f", &data)], &at, &[]).unwrap(),
                data,
            ));
        }
        let case = format!("{how}, damage {damage}");
        let gone: BTreeSet<String> = repo
            .restore_plan(&snaps[0].0, None)
            .unwrap()
            .files
            .iter()
            .map(|f| f.path.clone())
            .collect();
        let victim = repo
            .restore_plan(&snaps[3].0, None)
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.path)
            .find(|p| p.ends_with(".pack") && !gone.contains(p))
            .expect("the last snapshot has packs of its own");
        let mut bytes = repo.storage().get(&victim).unwrap();
        match damage {
            0 => {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x20
            }
            1 => bytes.truncate(0),
            _ => bytes[..64].fill(0),
        }
        repo.storage().overwrite(&victim, bytes);
        let before = repo.storage().snapshot_objects();
        let run = |seed: u64| match how {
            "forget" => repo.forget(
                &[snaps[0].0.id.to_hex()],
                PruneOptions::new().dry_run(false),
                &maintenance_lock(),
                &mut TestRng(seed),
                &LockPolicy::NEVER,
            ),
            _ => repo.prune(
                &retention(
                    &containerarchive_core::retention::Policy {
                        keep_last: 3,
                        ..Default::default()
                    },
                    &BTreeMap::new(),
                ),
                PruneOptions::new().dry_run(false),
                &maintenance_lock(),
                &mut TestRng(seed),
                &LockPolicy::NEVER,
            ),
        };
        let e = run(1).unwrap_err();
        assert!(matches!(e, Error::Corruption { .. }), "{case}: {e:?}");
        assert!(e.to_string().contains(&id_of(&victim)), "{case}: {e}");
        assert!(e.to_string().contains("repair"), "{case}: {e}");
        // Nothing was deleted (new packs may have been written: unindexed, harmless).
        let after = repo.storage().snapshot_objects();
        for key in before.keys() {
            assert!(after.contains_key(key), "{case}: {key} was deleted");
        }
        // Repair rebuilds the pack from the group that still has every member; then it works.
        let r = repo
            .repair(&maintenance_lock(), &mut TestRng(2), &LockPolicy::NEVER)
            .unwrap();
        assert!(r.unrecoverable.is_empty(), "{case}: {:?}", r.unrecoverable);
        run(3).unwrap_or_else(|e| panic!("{case}: after repair: {e}"));
        assert!(verify(&repo, VerifyLevel::Full).ok, "{case}");
        for (snap, data) in &snaps[1..] {
            let s = repo.get_snapshot(&snap.id.to_hex()).unwrap();
            assert_eq!(&restore(&repo, &s, "f").unwrap(), data, "{case}");
        }
    }
}
