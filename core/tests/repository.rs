//! Behaviour of a repository over in-memory storage, as a user would see it.

mod common;

use containerarchive_core::lock::LockPolicy;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use containerarchive_core::pack::read_pack_entries;
use containerarchive_core::*;

const PASS: &[u8] = b"correct horse battery staple";

fn encrypted() -> Repository<MemoryStorage> {
    memory_repo(Some(PASS), &fast_kdf(), 1)
}

fn plain(compression: Compression) -> Repository<MemoryStorage> {
    let opts = InitOptions {
        compression,
        ..fast_kdf()
    };
    memory_repo(None, &opts, 1)
}

#[test]
fn streams_of_every_size_round_trip_in_every_mode() {
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"x".to_vec(),
        b"tiny input".to_vec(),
        sql_dump(60_000, 1),
        noise(3 << 20, 7),
    ];
    let repos = [
        encrypted(),
        plain(Compression::Zstd),
        plain(Compression::Gzip),
        plain(Compression::None),
    ];
    for repo in &repos {
        for (i, data) in inputs.iter().enumerate() {
            let snap =
                ingest_items(repo, &[("data", data)], "2026-02-01T10:00:00+02:00", &[]).unwrap();
            assert_eq!(snap.manifest.original_size, data.len() as u64);
            assert_eq!(
                restore(repo, &snap, "data").unwrap(),
                *data,
                "input {i}, {:?}",
                repo.config().compression
            );
        }
    }
}

#[test]
fn the_same_stream_twice_stores_no_new_chunk() {
    let repo = encrypted();
    let data = sql_dump(100_000, 3);
    let first = ingest_items(&repo, &[("db.sql", &data)], "2026-02-01T00:00:00Z", &[]).unwrap();
    assert!(first.manifest.new_chunks > 5);
    assert_eq!(first.manifest.reused_chunks, 0);
    let second = ingest_items(&repo, &[("db.sql", &data)], "2026-02-02T00:00:00Z", &[]).unwrap();
    assert_eq!(second.manifest.new_chunks, 0);
    assert_eq!(second.manifest.reused_chunks, first.manifest.chunk_count);
    // Only the chunk list (already stored) and nothing else: the manifest adds no pack.
    assert_eq!(second.manifest.stored_size, 0);
}

#[test]
fn a_reopened_repository_deduplicates_against_what_is_on_storage() {
    let storage = MemoryStorage::new();
    let data = noise(4 << 20, 11);
    {
        let repo = init_on(&storage, Some(PASS), &fast_kdf(), 1);
        ingest_items(&repo, &[("a", &data)], "2026-02-01T00:00:00Z", &[]).unwrap();
    }
    let repo = Repository::open(&storage, Some(PASS)).unwrap();
    let snap = ingest_items(&repo, &[("a", &data)], "2026-02-02T00:00:00Z", &[]).unwrap();
    assert_eq!(snap.manifest.new_chunks, 0);
    assert_eq!(restore(&repo, &snap, "a").unwrap(), data);
}

#[test]
fn large_streams_span_many_packs_and_every_pack_describes_itself() {
    let opts = InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    };
    let repo = memory_repo(Some(PASS), &opts, 5);
    let data = noise(12 << 20, 5);
    let snap = ingest_items(&repo, &[("big", &data)], "2026-02-01T00:00:00Z", &[]).unwrap();
    assert_eq!(restore(&repo, &snap, "big").unwrap(), data);
    let objects = repo.storage().snapshot_objects();
    let packs: Vec<_> = objects.keys().filter(|k| k.ends_with(".pack")).collect();
    assert!(packs.len() >= 5, "{} packs", packs.len());
    for key in packs {
        let from_pack = read_pack_entries(repo.keys(), key, &objects[key]).unwrap();
        let idx_key = key.replace(".pack", ".idx");
        let (id, size, from_idx) =
            pack::decode_idx(repo.keys(), &idx_key, &objects[&idx_key]).unwrap();
        assert_eq!(from_pack, from_idx);
        assert_eq!(size, objects[key].len() as u64);
        assert_eq!(
            Id::sha256(&objects[key]),
            id,
            "a pack's id is the hash of its bytes"
        );
    }
}

#[test]
fn a_multi_item_snapshot_restores_each_item_separately() {
    let repo = encrypted();
    let db = sql_dump(30_000, 9);
    let conf = b"listen_addresses = '*'\n".to_vec();
    let snap = ingest_items(
        &repo,
        &[("database.sql", &db), ("config.tar", &conf)],
        "2026-03-01T00:00:00Z",
        &[("host", "db1")],
    )
    .unwrap();
    assert_eq!(snap.manifest.items.len(), 2);
    assert_eq!(restore(&repo, &snap, "database.sql").unwrap(), db);
    assert_eq!(restore(&repo, &snap, "config.tar").unwrap(), conf);
    match repo.item_reader(&snap, "nope") {
        Err(Error::ItemNotFound {
            snapshot,
            item,
            available,
        }) => {
            assert_eq!(snapshot, snap.id.to_hex());
            assert_eq!(item, "nope");
            assert_eq!(available, vec!["database.sql", "config.tar"]);
        }
        other => panic!("expected ItemNotFound, got {:?}", other.err()),
    }
}

#[test]
fn a_wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    let storage = MemoryStorage::new();
    init_on(&storage, Some(PASS), &fast_kdf(), 1);
    let before = storage.snapshot_objects();
    let err = Repository::open(&storage, Some(b"wrong")).err().unwrap();
    assert!(matches!(err, Error::WrongPassphrase(_)), "{err}");
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    let err = Repository::open(&storage, None).err().unwrap();
    assert!(matches!(err, Error::WrongPassphrase(_)), "{err}");
    assert_eq!(storage.snapshot_objects(), before);
}

#[test]
fn init_and_open_report_where_there_is_or_is_not_a_repository() {
    let storage = MemoryStorage::new();
    assert!(matches!(
        Repository::open(&storage, None).err().unwrap(),
        Error::RepositoryNotFound { .. }
    ));
    init_on(&storage, None, &fast_kdf(), 1);
    let err = Repository::init(
        &storage,
        None,
        &fast_kdf(),
        "2026-01-01T00:00:00Z",
        "",
        &mut TestRng(2),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::RepositoryExists { .. }), "{err}");
}

#[test]
fn nothing_readable_leaks_into_an_encrypted_repository() {
    let repo = encrypted();
    let marker = b"PLAINTEXT-MARKER-7f3a";
    let mut data = sql_dump(5_000, 1);
    data.extend_from_slice(marker);
    ingest_items(
        &repo,
        &[("secret-item-name", &data)],
        "2026-02-01T00:00:00Z",
        &[("secret-tag", "secret-value")],
    )
    .unwrap();
    for (key, bytes) in repo.storage().snapshot_objects() {
        for needle in [
            &marker[..],
            b"secret-item-name",
            b"secret-tag",
            b"secret-value",
            b"INSERT INTO",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{key} contains {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[test]
fn snapshots_are_listed_by_tags_and_time_and_found_by_prefix() {
    let repo = encrypted();
    let a = ingest_items(
        &repo,
        &[("d", b"one")],
        "2026-01-01T00:00:00Z",
        &[("db", "main")],
    )
    .unwrap();
    let b = ingest_items(
        &repo,
        &[("d", b"two")],
        "2026-02-01T00:00:00+05:00",
        &[("db", "main"), ("kind", "full")],
    )
    .unwrap();
    let c = ingest_items(
        &repo,
        &[("d", b"three")],
        "2026-03-01T00:00:00Z",
        &[("db", "other")],
    )
    .unwrap();
    let ids = |f: SnapshotFilter| {
        repo.list_snapshots(&f)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(SnapshotFilter::default()), vec![a.id, b.id, c.id]);
    let main = SnapshotFilter {
        tags: [("db".to_string(), "main".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(ids(main), vec![a.id, b.id]);
    let window = SnapshotFilter {
        after: Some(time("2026-01-15T00:00:00Z")),
        before: Some(time("2026-02-28T00:00:00Z")),
        ..Default::default()
    };
    assert_eq!(ids(window), vec![b.id]);
    let exact = SnapshotFilter {
        after: Some(b.time),
        before: Some(b.time),
        ..Default::default()
    };
    assert_eq!(ids(exact), vec![b.id], "both bounds are inclusive");
    let got = repo.get_snapshot(&b.id.to_hex()[..10]).unwrap();
    assert_eq!(got, b);
    assert_eq!(got.manifest.created_at, "2026-02-01T00:00:00.000000+05:00");
    assert_eq!(repo.get_snapshot("latest").unwrap().id, c.id);
    assert!(matches!(
        repo.get_snapshot("zz").err().unwrap(),
        Error::SnapshotNotFound(_)
    ));
    assert!(matches!(
        repo.get_snapshot(&"0".repeat(64)).err().unwrap(),
        Error::SnapshotNotFound(_)
    ));
}

#[test]
fn an_ambiguous_prefix_names_every_match() {
    let repo = plain(Compression::Zstd);
    let mut snaps = Vec::new();
    for i in 0..40 {
        snaps.push(
            ingest_items(
                &repo,
                &[("d", format!("{i}").as_bytes())],
                "2026-01-01T00:00:00Z",
                &[],
            )
            .unwrap(),
        );
    }
    // 40 ids over 16 first hex digits: some first digit is shared.
    let shared = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| {
            snaps
                .iter()
                .filter(|s| s.id.to_hex().starts_with(p.as_str()))
                .count()
                > 1
        })
        .unwrap();
    match repo.get_snapshot(&shared).err().unwrap() {
        Error::AmbiguousSnapshotId { prefix, matches } => {
            assert_eq!(prefix, shared);
            assert!(matches.len() > 1 && matches.iter().all(|m| m.starts_with(&shared)));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn listing_snapshots_never_reads_a_pack() {
    let storage = CountingStorage {
        inner: MemoryStorage::new(),
        pack_reads: AtomicUsize::new(0),
    };
    let repo = init_on(&storage, Some(PASS), &fast_kdf(), 1);
    for i in 0..5 {
        ingest_items(
            &repo,
            &[("d", &noise(300_000, i))],
            "2026-01-01T00:00:00Z",
            &[],
        )
        .unwrap();
    }
    let repo = Repository::open(&storage, Some(PASS)).unwrap();
    storage.pack_reads.store(0, Ordering::SeqCst);
    let all = repo.list_snapshots(&SnapshotFilter::default()).unwrap();
    assert_eq!(all.len(), 5);
    assert!(all[0].manifest.items[0].chunk_count >= 1);
    assert_eq!(storage.pack_reads.load(Ordering::SeqCst), 0);
}

#[test]
fn a_flipped_bit_in_a_pack_is_reported_naming_chunk_and_pack() {
    for repo in [encrypted(), plain(Compression::Zstd)] {
        let data = noise(1 << 20, 3);
        let snap = ingest_items(&repo, &[("d", &data)], "2026-01-01T00:00:00Z", &[]).unwrap();
        let objects = repo.storage().snapshot_objects();
        let (key, mut bytes) = objects
            .into_iter()
            .find(|(k, _)| k.ends_with(".pack"))
            .unwrap();
        bytes[100] ^= 0x04;
        repo.storage().overwrite(&key, bytes);
        let err = restore(&repo, &snap, "d").err().unwrap();
        match &err {
            Error::Corruption { object, .. } => {
                assert!(
                    object.contains("chunk ")
                        && key.contains(object.split("pack ").nth(1).unwrap()),
                    "{err}"
                )
            }
            e => panic!("{e}"),
        }
    }
}

#[test]
fn a_missing_pack_is_reported_naming_it() {
    let repo = encrypted();
    let snap = ingest_items(
        &repo,
        &[("d", &noise(1 << 20, 3))],
        "2026-01-01T00:00:00Z",
        &[],
    )
    .unwrap();
    let key = repo
        .storage()
        .snapshot_objects()
        .into_keys()
        .find(|k| k.ends_with(".pack"))
        .unwrap();
    repo.storage().delete(&key).unwrap();
    let err = restore(&repo, &snap, "d").err().unwrap();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    let pack_id = key.rsplit('/').next().unwrap().trim_end_matches(".pack");
    assert!(
        err.to_string().contains(pack_id) && err.to_string().contains("missing"),
        "{err}"
    );
}

#[test]
fn a_damaged_snapshot_file_is_read_from_its_copy_and_both_damaged_are_reported_naming_it() {
    let repo = encrypted();
    let snap = ingest_items(&repo, &[("d", b"abc")], "2026-01-01T00:00:00Z", &[]).unwrap();
    for (i, key) in [
        format!("snapshots/{}.snapshot", snap.id),
        format!("copies/snapshots/{}.snapshot", snap.id),
    ]
    .into_iter()
    .enumerate()
    {
        let mut bytes = repo.storage().get(&key).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        repo.storage().overwrite(&key, bytes);
        let got = repo.get_snapshot(&snap.id.to_hex());
        if i == 0 {
            assert_eq!(got.unwrap().id, snap.id, "the copy serves");
            continue;
        }
        let err = got.err().unwrap();
        let text = err.to_string();
        assert!(
            matches!(err, Error::Corruption { .. })
                && text.contains(&snap.id.to_hex())
                && text.contains("copies/snapshots/"),
            "{err}"
        );
    }
}

#[test]
fn an_exclusive_lock_blocks_ingest_until_released_or_stale() {
    let repo = encrypted();
    let mut exclusive = lock_info();
    exclusive.exclusive = true;
    exclusive.operation = "prune".into();
    let held = repo
        .lock(&exclusive, &mut TestRng(50), &LockPolicy::NEVER)
        .unwrap();
    let key = held.key().unwrap();
    let err = ingest_items(&repo, &[("d", b"x")], "2026-01-01T00:00:00Z", &[])
        .err()
        .unwrap();
    match &err {
        Error::Locked { lock, holder } => {
            assert_eq!(lock, &key);
            assert!(
                holder.contains("prune") && holder.contains("exclusive"),
                "{holder}"
            );
        }
        e => panic!("{e}"),
    }
    // A lock judged stale (its process is gone) does not block.
    let mut ing = repo
        .ingest(
            &lock_info(),
            Box::new(TestRng(60)),
            &LockPolicy {
                stale_after_ms: i64::MAX,
                holder_gone: &|_| true,
            },
        )
        .unwrap();
    ing.start_item("d", "raw").unwrap();
    ing.abort().unwrap();
    repo.unlock(&held).unwrap();
    ingest_items(&repo, &[("d", b"x")], "2026-01-01T00:00:00Z", &[]).unwrap();
    assert!(
        repo.storage().list("locks/").unwrap().is_empty(),
        "ingest removes its lock"
    );
}

#[test]
fn unsafe_item_names_and_tags_are_refused() {
    let repo = encrypted();
    for name in [
        "",
        "../etc/passwd",
        "/abs",
        "a//b",
        "a/./b",
        "nul\0byte",
        "back\\slash",
    ] {
        let err = ingest_items(&repo, &[(name, b"x")], "2026-01-01T00:00:00Z", &[])
            .err()
            .unwrap();
        assert!(matches!(err, Error::InvalidArgument(_)), "{name:?}: {err}");
    }
    let long = "k".repeat(300);
    let err = ingest_items(
        &repo,
        &[("d", b"x")],
        "2026-01-01T00:00:00Z",
        &[(long.as_str(), "v")],
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)));
    assert!(repo
        .list_snapshots(&SnapshotFilter::default())
        .unwrap()
        .is_empty());
    assert!(ingest_items(
        &repo,
        &[("dir/file.sql", b"x")],
        "2026-01-01T00:00:00Z",
        &[]
    )
    .is_ok());
}

#[test]
fn a_forged_manifest_with_unsafe_item_names_is_refused_when_read() {
    // Whoever can write an unencrypted repository can store a manifest that never went
    // through ingest; its names must be checked on the way in as well as on the way out.
    use containerarchive_core::snapshot::{encode_snapshot, snapshot_key};
    let repo = plain(Compression::Zstd);
    let good = ingest_items(&repo, &[("d", b"abc")], "2026-01-01T00:00:00Z", &[]).unwrap();
    for name in ["../../etc/cron.d/x", "/abs", "a/../../b", "nul\0", "d"] {
        let mut manifest = good.manifest.clone();
        let mut item = manifest.items[0].clone();
        item.name = name.replace("\\0", "\0");
        manifest.items.push(item);
        let (id, bytes) = encode_snapshot(repo.keys(), &manifest, [0; 12]);
        repo.storage().put(&snapshot_key(&id), &bytes).unwrap();
        let err = repo.load_snapshot(id).err().unwrap();
        assert!(
            matches!(err, Error::Corruption { .. }) && err.to_string().contains(&id.to_hex()),
            "{name:?}: {err}"
        );
        repo.storage().delete(&snapshot_key(&id)).unwrap();
    }
    let mut manifest = good.manifest.clone();
    manifest.tags.insert("k".into(), "line\nbreak".into());
    let (id, bytes) = encode_snapshot(repo.keys(), &manifest, [0; 12]);
    repo.storage().put(&snapshot_key(&id), &bytes).unwrap();
    assert!(matches!(
        repo.load_snapshot(id),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn incremental_versions_of_a_dump_reuse_most_chunks() {
    let repo = encrypted();
    let rows = 400_000;
    let v1 = sql_dump(rows, 0);
    let lines: Vec<&[u8]> = v1.split_inclusive(|&b| b == b'\n').collect();
    let mut v2 = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i == rows / 2 {
            for j in 0..2000 {
                v2.extend_from_slice(
                    format!("INSERT INTO orders VALUES (9{j}, 'new', 1.00, '2026-02-01');\n")
                        .as_bytes(),
                );
            }
        }
        // 5 runs of 200 consecutive rows updated, spread over the file.
        if i % (rows / 5) < 200 {
            v2.extend_from_slice(
                format!("INSERT INTO orders VALUES ({i}, 'updated', 2.00, '2026-02-02');\n")
                    .as_bytes(),
            );
        } else {
            v2.extend_from_slice(line);
        }
    }
    for j in 0..2000 {
        v2.extend_from_slice(
            format!("INSERT INTO orders VALUES (8{j}, 'appended', 3.00, '2026-02-03');\n")
                .as_bytes(),
        );
    }
    let a = ingest_items(&repo, &[("db.sql", &v1)], "2026-01-01T00:00:00Z", &[]).unwrap();
    let b = ingest_items(&repo, &[("db.sql", &v2)], "2026-01-02T00:00:00Z", &[]).unwrap();
    let reused = b.manifest.reused_chunks as f64 / b.manifest.chunk_count as f64;
    // Each edited region (5 runs, 1 insert, 1 append) touches at most 3 chunks.
    assert!(
        b.manifest.new_chunks <= 3 * 7,
        "{} new chunks",
        b.manifest.new_chunks
    );
    assert!(reused >= 0.85, "reused {reused}");
    assert!(b.manifest.stored_size * 4 < a.manifest.stored_size);
    assert_eq!(restore(&repo, &b, "db.sql").unwrap(), v2);
}

#[test]
fn a_restore_plan_names_exactly_the_files_an_item_needs() {
    let opts = InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    };
    let repo = memory_repo(Some(PASS), &opts, 21);
    let a = noise(3 << 20, 1);
    let b = noise(3 << 20, 2);
    let snap = ingest_items(&repo, &[("a", &a), ("b", &b)], "2026-01-01T00:00:00Z", &[]).unwrap();
    let plan = repo.restore_plan(&snap, Some("b")).unwrap();
    assert!(plan.complete && plan.missing.is_empty(), "{plan:?}");
    let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths[0], "config.json");
    assert!(paths[1].starts_with("keys/"));
    assert_eq!(paths[2], format!("snapshots/{}.snapshot", snap.id));
    assert!(paths.iter().any(|p| p.starts_with("index/")));
    let packs: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| p.ends_with(".pack"))
        .collect();
    let all_packs = repo
        .storage()
        .list("packs/data/")
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".pack"))
        .count();
    assert!(
        !packs.is_empty() && packs.len() < all_packs,
        "item b needs only some packs"
    );
    assert_eq!(
        plan.total_bytes,
        plan.files.iter().map(|f| f.size.unwrap()).sum::<u64>()
    );

    // Restore works from exactly those files.
    let partial = MemoryStorage::new();
    for f in &plan.files {
        partial.overwrite(&f.path, repo.storage().get(&f.path).unwrap());
    }
    let copy = Repository::open(&partial, Some(PASS)).unwrap();
    let snap_copy = copy.get_snapshot(&snap.id.to_hex()).unwrap();
    assert_eq!(restore(&copy, &snap_copy, "b").unwrap(), b);
    assert!(copy
        .restore_plan(&snap_copy, Some("b"))
        .unwrap()
        .missing
        .is_empty());

    // Without one data pack, the plan names it as missing.
    let gone = packs[0];
    partial.delete(gone).unwrap();
    let copy = Repository::open(&partial, Some(PASS)).unwrap();
    let plan = copy.restore_plan(&snap_copy, Some("b")).unwrap();
    assert!(plan.missing.iter().any(|m| m == gone), "{plan:?}");
}

#[test]
fn a_restore_plan_names_the_copy_of_a_lost_or_damaged_metadata_file() {
    let opts = InitOptions {
        pack_size: 1 << 20,
        ..fast_kdf()
    };
    let data = noise(2 << 20, 3);
    for damage in ["delete", "junk"] {
        for victim in ["config", "key", "manifest", "manifest and copy"] {
            let repo = memory_repo(Some(PASS), &opts, 22);
            let snap = ingest_items(&repo, &[("a", &data)], "2026-01-01T00:00:00Z", &[]).unwrap();
            let storage = repo.storage();
            let key = storage.list("keys/").unwrap()[0].0.clone();
            let manifest = format!("snapshots/{}.snapshot", snap.id);
            let manifest_copy = format!("copies/snapshots/{}.snapshot", snap.id);
            let victims: Vec<String> = match victim {
                "config" => vec!["config.json".into()],
                "key" => vec![key.clone()],
                "manifest" => vec![manifest.clone()],
                _ => vec![manifest.clone(), manifest_copy.clone()],
            };
            for v in &victims {
                match damage {
                    "delete" => storage.delete(v).unwrap(),
                    _ => storage.overwrite(v, b"{\"not\": \"this file\"}".to_vec()),
                }
            }
            let repo = Repository::open(storage, Some(PASS)).unwrap();
            let case = format!("{damage} {victim}");
            if victim == "manifest and copy" {
                let plan = repo.restore_plan(&snap, None).unwrap();
                assert!(!plan.complete, "{case}: {plan:?}");
                let named: &Vec<String> = if damage == "delete" {
                    &plan.missing
                } else {
                    &plan.damaged
                };
                assert_eq!(named, &vec![manifest.clone()], "{case}");
                continue;
            }
            let plan = repo.restore_plan(&snap, None).unwrap();
            assert!(
                plan.complete && plan.missing.is_empty() && plan.damaged.is_empty(),
                "{case}: {plan:?}"
            );
            let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
            let (gone, instead) = match victim {
                "config" => ("config.json".to_string(), "copies/config".to_string()),
                "key" => (key.clone(), format!("copies/{key}")),
                _ => (manifest.clone(), manifest_copy.clone()),
            };
            assert!(!paths.contains(&gone.as_str()), "{case}: {paths:?}");
            assert!(paths.contains(&instead.as_str()), "{case}: {paths:?}");
            // Exactly those files open and restore.
            let partial = MemoryStorage::new();
            for f in &plan.files {
                partial.overwrite(&f.path, storage.get(&f.path).unwrap());
            }
            let copy = Repository::open(&partial, Some(PASS)).unwrap();
            let snap_copy = copy.get_snapshot(&snap.id.to_hex()).unwrap();
            assert_eq!(restore(&copy, &snap_copy, "a").unwrap(), data, "{case}");
        }
    }
}

/// Fails every `n`-th ranged read once, like a flaky network store.
struct Flaky {
    inner: MemoryStorage,
    calls: std::sync::atomic::AtomicUsize,
}

impl Storage for Flaky {
    fn location(&self) -> String {
        "flaky".into()
    }
    fn get(&self, key: &str) -> containerarchive_core::storage::StorageResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> containerarchive_core::storage::StorageResult<Vec<u8>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) % 3 == 1 {
            return Err(StorageError::Backend {
                key: key.into(),
                message: "timeout".into(),
            });
        }
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> containerarchive_core::storage::StorageResult<()> {
        self.inner.put(key, data)
    }
    fn list(
        &self,
        prefix: &str,
    ) -> containerarchive_core::storage::StorageResult<Vec<(String, u64)>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> containerarchive_core::storage::StorageResult<()> {
        self.inner.delete(key)
    }
}

#[test]
fn a_failed_read_during_restore_can_be_retried_without_losing_bytes() {
    let storage = Flaky {
        inner: MemoryStorage::new(),
        calls: AtomicUsize::new(0),
    };
    let repo = init_on(&storage, None, &fast_kdf(), 1);
    let data = noise(20 << 20, 4);
    let snap = ingest_items(&repo, &[("d", &data)], "2026-01-01T00:00:00Z", &[]).unwrap();
    let mut reader = repo.item_reader(&snap, "d").unwrap();
    let (mut out, mut failures) = (Vec::new(), 0);
    loop {
        match reader.next_batch() {
            Ok(Some(batch)) => batch.iter().for_each(|c| out.extend_from_slice(c)),
            Ok(None) => break,
            Err(Error::Storage(_)) => failures += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(failures > 0);
    assert_eq!(out, data);
}

#[test]
fn keys_can_be_added_changed_and_removed_but_never_the_last() {
    let storage = MemoryStorage::new();
    let repo = Repository::init(
        &storage,
        Some(PASS),
        &fast_kdf(),
        "2026-01-01T00:00:00Z",
        "first",
        &mut TestRng(1),
    )
    .unwrap();
    let snap = ingest_items(&repo, &[("d", b"secret data")], "2026-01-01T00:00:00Z", &[]).unwrap();
    let kdf = fast_kdf().kdf;
    let keys = repo.list_keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current && keys[0].comment == "first");
    let err = repo.remove_key(&keys[0].id).err().unwrap();
    assert!(err.to_string().contains("last key"), "{err}");

    let second = repo
        .add_key(
            b"second passphrase",
            kdf,
            "2026-01-02T00:00:00Z",
            "ops",
            &mut TestRng(2),
        )
        .unwrap();
    let by_second = Repository::open(&storage, Some(b"second passphrase")).unwrap();
    assert_eq!(restore(&by_second, &snap, "d").unwrap(), b"secret data");
    assert_eq!(
        by_second.current_key().unwrap(),
        format!("keys/{second}.key")
    );
    let err = by_second.remove_key(&second[..8]).err().unwrap();
    assert!(err.to_string().contains("opened with"), "{err}");
    by_second.remove_key(&keys[0].id[..10]).unwrap();
    assert!(matches!(
        Repository::open(&storage, Some(PASS)).err().unwrap(),
        Error::WrongPassphrase(_)
    ));

    let third = by_second
        .change_passphrase(
            b"third",
            kdf,
            "2026-01-03T00:00:00Z",
            "rotated",
            &mut TestRng(3),
        )
        .unwrap();
    assert!(matches!(
        Repository::open(&storage, Some(b"second passphrase"))
            .err()
            .unwrap(),
        Error::WrongPassphrase(_)
    ));
    let by_third = Repository::open(&storage, Some(b"third")).unwrap();
    assert_eq!(restore(&by_third, &snap, "d").unwrap(), b"secret data");
    let listed = by_third.list_keys().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, third);
    assert!(listed[0].current);

    let plain = memory_repo(None, &fast_kdf(), 4);
    assert!(matches!(
        plain.list_keys().err().unwrap(),
        Error::InvalidArgument(_)
    ));
}

#[test]
fn a_blob_read_under_another_chunk_id_is_refused_with_or_without_encryption() {
    for repo in [encrypted(), plain(Compression::Zstd)] {
        let data = noise(2 << 20, 9);
        ingest_items(&repo, &[("d", &data)], "2026-01-01T00:00:00Z", &[]).unwrap();
        let objects = repo.storage().snapshot_objects();
        let (key, bytes) = objects.iter().find(|(k, _)| k.ends_with(".pack")).unwrap();
        let entries = read_pack_entries(repo.keys(), key, bytes).unwrap();
        let pack = Id::from_hex(key.rsplit('/').next().unwrap().trim_end_matches(".pack")).unwrap();
        let (a, b) = (entries[0], entries[1]);
        let stored = &bytes[a.offset as usize..(a.offset + a.stored_len) as usize];
        let honest = index::Location { pack, entry: a };
        assert_eq!(
            blob::read_blob(repo.keys(), &honest, stored, None)
                .unwrap()
                .len(),
            a.raw_len as usize
        );
        // The index claims blob a's bytes are chunk b: the seal label (encrypted) or the
        // recomputed id (unencrypted) refuses them, naming the chunk.
        let lying = index::Location {
            pack,
            entry: pack::PackEntry { id: b.id, ..a },
        };
        for err in [
            blob::read_blob(repo.keys(), &lying, stored, None).unwrap_err(),
            blob::decode_blob(repo.keys(), &lying, stored, None).unwrap_err(),
        ] {
            assert!(err.to_string().contains(&b.id.to_string()), "{err}");
        }
    }
}

#[test]
fn item_names_that_would_clash_in_a_directory_are_refused() {
    let repo = memory_repo(None, &fast_kdf(), 77);
    for (a, b) in [("x", "x/y"), ("x/y", "x"), ("a/b", "a/b/c/d")] {
        let e =
            ingest_items(&repo, &[(a, b"1"), (b, b"2")], "2026-03-01T00:00:00Z", &[]).unwrap_err();
        assert!(e.to_string().contains("clash"), "{a} {b}: {e}");
    }
    ingest_items(
        &repo,
        &[("x", b"1"), ("xy/z", b"2"), ("x.d/y", b"3")],
        "2026-03-01T00:00:00Z",
        &[],
    )
    .unwrap();
}
