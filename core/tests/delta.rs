//! Delta encoding (issue 17): nightly dumps whose rows change a little are stored as deltas
//! against the previous night's chunks, and every operation keeps them restorable.

mod common;

use containerarchive_core::lock::LockPolicy;
use containerarchive_core::ops::prune::PruneOptions;
use containerarchive_core::ops::verify::{FindingKind, VerifyLevel, VerifyOptions};
use containerarchive_core::pack::pack_key;

use common::*;
use containerarchive_core::*;

const PASS: &[u8] = b"delta";

/// A table dump of `rows` rows (ids, a random token per row version, names, amounts, dates:
/// about 2.5:1 under zstd, as real tables); night `n` updates every 25th row (shifted by night,
/// so other rows each night), moving the new versions to the end, as PostgreSQL's heap does.
fn night(rows: usize, n: usize) -> Vec<u8> {
    let token = |i: usize, version: usize| {
        let mut z = (i as u64) << 8 | version as u64;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut kept = Vec::new();
    let mut moved = Vec::new();
    for i in 0..rows {
        let version = (1..=n).rev().find(|k| (i + k * 7) % 25 == 0).unwrap_or(0);
        let row = format!(
            "{i}\t{:016x}\tcustomer-{:05}\t{}.{:02}\t2026-01-{:02}\n",
            token(i, version),
            (i as u64 * 7919) % 100_000,
            (i * 31) % 1000,
            i % 100,
            i % 28 + 1,
        );
        if version == n && n > 0 {
            moved.push(row);
        } else {
            kept.push(row);
        }
    }
    kept.extend(moved);
    kept.concat().into_bytes()
}

fn repo(delta: bool) -> Repository<MemoryStorage> {
    let opts = InitOptions {
        pack_size: 1 << 20,
        delta,
        ..fast_kdf()
    };
    memory_repo(Some(PASS), &opts, 5)
}

fn lock(op: &str) -> LockInfo {
    let mut l = lock_info();
    l.operation = op.into();
    l
}

#[test]
fn the_second_night_is_stored_as_deltas_and_restores_byte_identical() {
    let with = repo(true);
    let without = repo(false);
    assert!(with.delta() && !without.delta());
    assert!(with.config().features.read.iter().any(|f| f == "delta"));
    assert!(without.config().features.read.is_empty());
    let (n1, n2) = (night(120_000, 1), night(120_000, 2));
    let mut stored = Vec::new();
    for r in [&with, &without] {
        ingest_items(r, &[("db.sql", &n1)], "2026-01-01T00:00:00Z", &[]).unwrap();
        let s2 = ingest_items(r, &[("db.sql", &n2)], "2026-01-02T00:00:00Z", &[]).unwrap();
        assert_eq!(restore(r, &s2, "db.sql").unwrap(), n2);
        stored.push(s2.manifest.stored_size);
        let st = r.stats().unwrap();
        assert_eq!(st.delta_chunks, s2.manifest.delta_chunks);
        assert_eq!(st.delta_stored_bytes, s2.manifest.delta_stored_size);
        if r.delta() {
            assert!(s2.manifest.delta_chunks > 0, "{:?}", s2.manifest);
            assert!(s2.manifest.delta_stored_size < s2.manifest.delta_original_size / 10);
        } else {
            assert_eq!(s2.manifest.delta_chunks, 0);
        }
        let report = r.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
        assert!(report.ok, "{:?}", report.errors);
    }
    assert!(
        stored[0] * 4 < stored[1],
        "delta {} vs full {}",
        stored[0],
        stored[1]
    );
}

#[test]
fn a_reopened_repository_finds_bases_through_its_index_files() {
    let storage = MemoryStorage::new();
    let opts = InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    };
    {
        let r = init_on(&storage, Some(PASS), &opts, 1);
        ingest_items(
            &r,
            &[("db.sql", &night(80_000, 1))],
            "2026-01-01T00:00:00Z",
            &[],
        )
        .unwrap();
    }
    let r = Repository::open(&storage, Some(PASS)).unwrap();
    let n2 = night(80_000, 2);
    let s2 = ingest_items(&r, &[("db.sql", &n2)], "2026-01-02T00:00:00Z", &[]).unwrap();
    assert!(s2.manifest.delta_chunks > 0);
    let again = Repository::open(&storage, Some(PASS)).unwrap();
    assert_eq!(restore(&again, &s2, "db.sql").unwrap(), n2);
}

#[test]
fn restore_plans_name_the_packs_of_bases() {
    let r = repo(true);
    ingest_items(
        &r,
        &[("db.sql", &night(80_000, 1))],
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    let s1_packs: Vec<Id> = r.storage_packs();
    let s2 = ingest_items(
        &r,
        &[("db.sql", &night(80_000, 2))],
        "2026-01-02T00:00:00Z",
        &[],
    )
    .unwrap();
    let plan = r.restore_plan(&s2, Some("db.sql")).unwrap();
    assert!(plan.complete);
    let named: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        s1_packs
            .iter()
            .any(|p| named.contains(&pack_key(p).as_str())),
        "the plan names a pack of night 1 (holding bases)"
    );
}

#[test]
fn forgetting_the_night_that_holds_the_bases_keeps_later_nights_restorable() {
    let r = repo(true);
    let s1 = ingest_items(
        &r,
        &[("db.sql", &night(80_000, 1))],
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    let mut later = Vec::new();
    for n in 2..=4 {
        let data = night(80_000, n);
        let t = format!("2026-01-0{n}T00:00:00Z");
        later.push((
            ingest_items(&r, &[("db.sql", &data)], &t, &[]).unwrap(),
            data,
        ));
    }
    assert!(later.iter().all(|(s, _)| s.manifest.delta_chunks > 0));
    r.forget(
        &[s1.id.to_hex()],
        PruneOptions::new(),
        &lock("prune"),
        &mut TestRng(3),
        &LockPolicy::NEVER,
    )
    .unwrap();
    for (s, data) in &later {
        assert_eq!(restore(&r, s, "db.sql").unwrap(), *data);
    }
    let report = r.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(report.ok, "{:?}", report.errors);
    // Night 1's chunks stay as bases at full size in `unique_bytes`; the reduction ratio
    // counts what they take stored.
    let st = r.stats().unwrap();
    let content: u64 = later.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(st.original_bytes, content);
    assert!(st.unique_bytes > st.original_bytes / 3, "{st:?}");
    assert!(st.reduction_ratio > 3.0, "{st:?}");
}

#[test]
fn a_lost_base_names_the_snapshots_that_need_it_and_repair_rebuilds_it_from_parity() {
    let r = repo(true);
    let s1 = ingest_items(
        &r,
        &[("db.sql", &night(80_000, 1))],
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    let night1_packs = r.storage_packs();
    let n2 = night(80_000, 2);
    let s2 = ingest_items(&r, &[("db.sql", &n2)], "2026-01-02T00:00:00Z", &[]).unwrap();
    assert!(s2.manifest.delta_chunks > 0);
    let victim = night1_packs[0];
    r.storage().delete(&pack_key(&victim)).unwrap();
    let report = r.verify(VerifyOptions::new(VerifyLevel::Standard)).unwrap();
    let missing = report
        .errors
        .iter()
        .find(|f| f.kind == FindingKind::PackMissing)
        .expect("the pack is reported");
    let both = [s1.id.to_hex(), s2.id.to_hex()];
    assert!(
        both.iter().all(|s| missing.message.contains(&s[..8])
            || missing.snapshot.as_deref() == Some(s.as_str())),
        "{missing:?}"
    );
    let fixed = r
        .repair(&lock("repair"), &mut TestRng(9), &LockPolicy::NEVER)
        .unwrap();
    assert_eq!(fixed.packs_repaired, vec![victim]);
    assert_eq!(restore(&r, &s2, "db.sql").unwrap(), n2);
}

#[test]
fn reindex_rebuilds_bases_and_features_from_the_packs() {
    let r = repo(true);
    ingest_items(
        &r,
        &[("db.sql", &night(80_000, 1))],
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    let n2 = night(80_000, 2);
    let s2 = ingest_items(&r, &[("db.sql", &n2)], "2026-01-02T00:00:00Z", &[]).unwrap();
    for (k, _) in r.storage().list("index/").unwrap() {
        r.storage().delete(&k).unwrap();
    }
    r.reindex(&lock("reindex"), &mut TestRng(4), &LockPolicy::NEVER)
        .unwrap();
    let fresh = Repository::open(r.storage(), Some(PASS)).unwrap();
    assert_eq!(restore(&fresh, &s2, "db.sql").unwrap(), n2);
    // Features came back too: a third night still finds bases.
    let s3 = ingest_items(
        &fresh,
        &[("db.sql", &night(80_000, 3))],
        "2026-01-03T00:00:00Z",
        &[],
    )
    .unwrap();
    assert!(s3.manifest.delta_chunks > 0);
}

#[test]
fn an_old_repository_turns_delta_on_and_old_chunks_serve_as_bases_once_rewritten_or_new() {
    let r = repo(false);
    let n1 = night(80_000, 1);
    let s1 = ingest_items(&r, &[("db.sql", &n1)], "2026-01-01T00:00:00Z", &[]).unwrap();
    r.enable_delta().unwrap();
    assert!(r.delta());
    let cfg: serde_json::Value =
        serde_json::from_slice(&r.storage().get("config.json").unwrap()).unwrap();
    assert!(cfg["features"]["read"]
        .as_array()
        .unwrap()
        .contains(&"delta".into()));
    // Night 1's chunks carry no features: night 2 is stored whole, night 3 against night 2.
    let s2 = ingest_items(
        &r,
        &[("db.sql", &night(80_000, 2))],
        "2026-01-02T00:00:00Z",
        &[],
    )
    .unwrap();
    assert_eq!(s2.manifest.delta_chunks, 0);
    let n3 = night(80_000, 3);
    let s3 = ingest_items(&r, &[("db.sql", &n3)], "2026-01-03T00:00:00Z", &[]).unwrap();
    assert!(s3.manifest.delta_chunks > 0);
    assert_eq!(restore(&r, &s3, "db.sql").unwrap(), n3);
    assert_eq!(restore(&r, &s1, "db.sql").unwrap(), n1);
}

/// Test helper: the data packs in storage now, by id.
trait Packs {
    fn storage_packs(&self) -> Vec<Id>;
}

impl Packs for Repository<MemoryStorage> {
    fn storage_packs(&self) -> Vec<Id> {
        self.storage()
            .list("packs/data/")
            .unwrap()
            .into_iter()
            .filter_map(|(k, _)| match layout::classify(&k)? {
                (layout::Kind::Pack, Some(id)) => Some(id),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn forget_never_leaves_a_delta_indexed_without_its_base_for_a_later_ingest_to_reuse() {
    // Night 2's deltas share a pack with chunks another snapshot keeps: forgetting nights 1
    // and 2 deletes the bases, so that pack must be rewritten without the dead deltas; if it
    // were kept, ingesting night 2 again would reuse deltas that cannot be read.
    let r = repo(true);
    let x = night(40_000, 1);
    let y = night(40_000, 2);
    let z = noise(6 << 20, 9);
    let s1 = ingest_items(&r, &[("x.sql", &x)], "2026-01-01T00:00:00Z", &[]).unwrap();
    let s2 = ingest_items(
        &r,
        &[("y.sql", &y), ("z.bin", &z)],
        "2026-01-02T00:00:00Z",
        &[],
    )
    .unwrap();
    assert!(s2.manifest.delta_chunks > 0);
    ingest_items(&r, &[("z.bin", &z)], "2026-01-03T00:00:00Z", &[]).unwrap();
    r.forget(
        &[s1.id.to_hex(), s2.id.to_hex()],
        PruneOptions::new(),
        &lock("prune"),
        &mut TestRng(5),
        &LockPolicy::NEVER,
    )
    .unwrap();
    let (view, _) = scan::read_index_view(r.storage(), r.keys(), |_, e| panic!("{e}")).unwrap();
    for loc in view.blobs.values() {
        for base in loc.entry.bases().iter().flat_map(|b| b.ids()) {
            assert!(
                view.blobs.contains_key(&base),
                "delta {} lost its base",
                loc.entry.id
            );
        }
    }
    let again = ingest_items(&r, &[("y.sql", &y)], "2026-01-04T00:00:00Z", &[]).unwrap();
    assert_eq!(restore(&r, &again, "y.sql").unwrap(), y);
    let report = r.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(report.ok, "{:?}", report.errors);
}

#[test]
fn a_delta_whose_base_is_gone_is_stored_again_whole_and_that_copy_is_read() {
    let r = repo(true);
    ingest_items(
        &r,
        &[("db.sql", &night(60_000, 1))],
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    let night1_packs = r.storage_packs();
    let n2 = night(60_000, 2);
    let s2 = ingest_items(&r, &[("db.sql", &n2)], "2026-01-02T00:00:00Z", &[]).unwrap();
    assert!(s2.manifest.delta_chunks > 0);
    // Night 1's packs (the bases) lost beyond repair, the index rebuilt from what is left:
    // night 2's deltas are indexed, their bases are not.
    for p in &night1_packs {
        r.storage().delete(&pack_key(p)).unwrap();
    }
    for (k, _) in r.storage().list("parity/").unwrap() {
        r.storage().delete(&k).unwrap();
    }
    r.reindex(&lock("reindex"), &mut TestRng(6), &LockPolicy::NEVER)
        .unwrap();
    let fresh = Repository::open(r.storage(), Some(PASS)).unwrap();
    let again = ingest_items(&fresh, &[("db.sql", &n2)], "2026-01-03T00:00:00Z", &[]).unwrap();
    assert!(
        again.manifest.new_chunks > 0,
        "the unreadable deltas are not reused"
    );
    assert_eq!(restore(&fresh, &again, "db.sql").unwrap(), n2);
    let reopened = Repository::open(r.storage(), Some(PASS)).unwrap();
    assert_eq!(restore(&reopened, &again, "db.sql").unwrap(), n2);
}

#[test]
fn each_night_is_a_delta_of_the_night_before_within_the_chain_bound_and_pruning_mid_chain_keeps_the_rest(
) {
    let r = repo(true);
    let mut nights = Vec::new();
    for n in 1..=12 {
        let data = night(40_000, n);
        let t = format!("2026-01-{n:02}T00:00:00Z");
        let s = ingest_items(&r, &[("db.sql", &data)], &t, &[]).unwrap();
        nights.push((s, data));
    }
    let stored: Vec<u64> = nights.iter().map(|(s, _)| s.manifest.stored_size).collect();
    // Against the night before, a night stores about as much as night 2 did (nights 3–12:
    // 1.46x night 2 on average, measured); with bases that are always full chunks, each
    // night's delta against night 1 grows (3.2x).
    let later: u64 = stored[2..].iter().sum();
    assert!(later < stored[1] * 2 * 10, "stored per night: {stored:?}");
    {
        let guard = r.index().unwrap();
        let index = guard.as_ref().unwrap();
        let (mut chained, mut deltas) = (0, 0);
        for e in index.entries() {
            let closure = index.closure(&e.id);
            assert!(closure.len() <= delta::MAX_DELTA_READS, "{closure:?}");
            deltas += usize::from(!closure.is_empty());
            chained += usize::from(closure.len() > 1);
        }
        assert!(
            chained * 2 > deltas,
            "{chained} of {deltas} deltas have a delta base"
        );
    }
    // Forget nights 2–6: their chunks are links of later nights' chains.
    let ids: Vec<String> = nights[1..6].iter().map(|(s, _)| s.id.to_hex()).collect();
    r.forget(
        &ids,
        PruneOptions::new(),
        &lock("prune"),
        &mut TestRng(3),
        &LockPolicy::NEVER,
    )
    .unwrap();
    for (s, data) in nights.iter().skip(6).chain(&nights[..1]) {
        assert_eq!(restore(&r, s, "db.sql").unwrap(), *data);
    }
    let report = r.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(report.ok, "{:?}", report.errors);
}

#[test]
fn a_lost_mid_chain_pack_names_every_later_night_that_needs_it() {
    let r = repo(true);
    let mut snaps = Vec::new();
    let mut packs_after = Vec::new();
    for n in 1..=4 {
        let t = format!("2026-01-0{n}T00:00:00Z");
        snaps.push(ingest_items(&r, &[("db.sql", &night(40_000, n))], &t, &[]).unwrap());
        packs_after.push(r.storage_packs());
    }
    // The packs night 2 added (its deltas: links of nights 3 and 4's chains), lost with every
    // parity shard (the group descriptions stay, naming what is lost), so that nothing can
    // rebuild them.
    let lost: Vec<Id> = packs_after[1]
        .iter()
        .filter(|p| !packs_after[0].contains(p))
        .copied()
        .collect();
    for (key, _) in r.storage().list("parity/").unwrap() {
        if key.ends_with(".parity") {
            r.storage().delete(&key).unwrap();
        }
    }
    for p in &lost {
        r.storage().delete(&pack_key(p)).unwrap();
    }
    let report = r
        .repair(&lock("repair"), &mut TestRng(9), &LockPolicy::NEVER)
        .unwrap();
    let named: std::collections::HashSet<Id> = report
        .unrecoverable
        .iter()
        .flat_map(|u| u.snapshots.iter().copied())
        .collect();
    assert!(!named.contains(&snaps[0].id));
    for s in &snaps[1..] {
        assert!(named.contains(&s.id), "{} not named: {report:?}", s.id);
    }
}

/// Restore checks the chunks it hands out, not the bases it decodes only to reach them
/// (`scan::read_with_bases`): a base deep in a chain that decodes to wrong bytes must still
/// fail the delta built on it, with a message naming that base, and verify must name the base.
/// Without encryption nothing but the chunk id checks content, so the damage here is a valid
/// frame of other bytes put in place of a night-2 delta that a night-3 delta is built on.
#[test]
fn a_base_that_decodes_to_wrong_bytes_fails_the_delta_built_on_it_and_verify_names_it() {
    let opts = InitOptions {
        pack_size: 1 << 20,
        delta: true,
        ..fast_kdf()
    };
    let r = memory_repo(None, &opts, 5);
    let nights: Vec<Vec<u8>> = (1..=3).map(|n| night(80_000, n)).collect();
    let snaps: Vec<Snapshot> = nights
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let at = format!("2026-01-0{}T00:00:00Z", i + 1);
            ingest_items(&r, &[("db.sql", d)], &at, &[]).unwrap()
        })
        .collect();
    // A night-3 delta whose only base is a night-2 delta with one base of its own.
    let (tip, mid, root) = {
        let guard = r.index().unwrap();
        let index = guard.as_ref().unwrap();
        let one = |id: &Id| {
            let ids: Vec<Id> = index.bases_of(id)?.ids().collect();
            (ids.len() == 1).then(|| ids[0])
        };
        let found = index.entries().find_map(|e| {
            let mid = one(&e.id)?;
            let root = one(&mid)?;
            Some((e.id, mid, root))
        });
        found.expect("a chain of two deltas")
    };
    let locate = |id: &Id| r.locate(id).unwrap().unwrap();
    let plain = scan::read_with_bases(
        r.storage(),
        r.keys(),
        &[locate(&mid), locate(&root)],
        |id| r.locate(id).unwrap(),
        true,
        true,
    );
    assert!(plain.unread.is_empty(), "{:?}", plain.unread);
    let (mid_plain, root_plain) = (&plain.plain[&mid], &plain.plain[&root]);
    // Other bytes of the same length: the root's, with a run of x in the middle.
    let mut wrong: Vec<u8> = root_plain
        .iter()
        .copied()
        .cycle()
        .take(mid_plain.len())
        .collect();
    let half = wrong.len() / 2;
    wrong[half..half + 4096].fill(b'x');
    let frame = delta::encode_delta(root_plain, &wrong, 3).unwrap();
    let at = locate(&mid);
    let room = at.entry.stored_len as usize;
    assert!(frame.len() + 8 <= room, "{} into {room}", frame.len());
    // Fill the rest with a skippable frame (RFC 8878, 3.1.2), which decoders pass over.
    let mut stored = frame;
    let pad = room - stored.len() - 8;
    stored.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    stored.extend_from_slice(&(pad as u32).to_le_bytes());
    stored.resize(room, 0);
    let key = pack_key(&at.pack);
    let mut pack = r.storage().get(&key).unwrap();
    let start = at.entry.offset as usize;
    pack[start..start + room].copy_from_slice(&stored);
    r.storage().delete(&key).unwrap();
    r.storage().put(&key, &pack).unwrap();

    // Night 3 reads the damaged chunk only as a base: a delta built on it (directly, as `tip`
    // is, or further up its chain) fails, naming itself and its base. Which one is met first
    // depends on the order parallel decoding finishes in.
    let dependents: Vec<(Id, Vec<Id>)> = {
        let guard = r.index().unwrap();
        let index = guard.as_ref().unwrap();
        let closure = |id: Id| {
            let mut seen = vec![id];
            let mut i = 0;
            while i < seen.len() {
                if let Some(b) = index.bases_of(&seen[i]) {
                    seen.extend(b.ids().filter(|x| !seen.contains(x)).collect::<Vec<_>>());
                }
                i += 1;
            }
            seen
        };
        index
            .entries()
            .map(|e| (e.id, closure(e.id)))
            .filter(|(id, c)| *id != mid && c.contains(&mid))
            .collect()
    };
    assert!(dependents.iter().any(|(id, _)| *id == tip));
    let err = restore(&r, &snaps[2], "db.sql").unwrap_err().to_string();
    assert!(
        dependents.iter().any(|(id, c)| err.contains(&id.to_hex())
            && c[1..].iter().any(|b| err.contains(&b.to_hex()))),
        "{err}"
    );
    // Night 2 hands it out: it fails its own check.
    let err = restore(&r, &snaps[1], "db.sql").unwrap_err().to_string();
    assert!(err.contains(&mid.to_hex()), "{err}");
    assert_eq!(restore(&r, &snaps[0], "db.sql").unwrap(), nights[0]);
    let report = r.verify(VerifyOptions::new(VerifyLevel::Full)).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|f| f.message.contains(&mid.to_hex()) && f.message.contains("hash")),
        "{:?}",
        report.errors
    );
}

/// Two lost packs: the one holding night 3's chunk list, and a night-2 pack night 3's deltas
/// need as bases. Verify cannot trace night 3's chunks, so the finding about the night-2 pack
/// must still name night 3 (as a snapshot that may need it), not give a list that looks
/// complete without it.
#[test]
fn a_lost_pack_names_a_snapshot_whose_chunk_list_is_lost_too_as_perhaps_needing_it() {
    let r = repo(true);
    let mut snaps = Vec::new();
    let mut before = Vec::new();
    for n in 1..=3 {
        before.push(r.storage_packs());
        let t = format!("2026-01-0{n}T00:00:00Z");
        snaps.push(ingest_items(&r, &[("db.sql", &night(80_000, n))], &t, &[]).unwrap());
    }
    let list = snaps[2].manifest.items[0].chunk_lists[0];
    let list_pack = r.locate(&list).unwrap().unwrap().pack;
    let night2: Vec<Id> = r
        .storage_packs()
        .into_iter()
        .filter(|p| !before[1].contains(p) && before[2].contains(p))
        .collect();
    let victim = night2[0];
    assert_ne!(victim, list_pack);
    for p in [victim, list_pack] {
        r.storage().delete(&pack_key(&p)).unwrap();
    }
    let report = r.verify(VerifyOptions::new(VerifyLevel::Standard)).unwrap();
    let lost = report
        .errors
        .iter()
        .find(|f| f.kind == FindingKind::PackMissing && f.pack == Some(victim.to_hex()))
        .expect("the night-2 pack is reported");
    assert!(
        lost.message.contains(&snaps[2].id.to_hex()),
        "{}",
        lost.message
    );
}
