//! Restore plans: exactly which files restoring an item (or a snapshot) needs, so that a user
//! can fetch only those from object storage and restore them elsewhere (e.g. in a browser).
//!
//! A plan can be made from a partial copy of a repository: what cannot be read yet is listed
//! as missing. Chunk lists live in packs, so a copy that lacks the packs holding an item's
//! chunk lists yields a plan naming those packs first; once they are there, the plan names the
//! data packs too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::config::{CONFIG_COPY_KEY, CONFIG_KEY};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{decode_index_file, Location, INDEX_PREFIX};
use crate::keyfile::{key_copy_key, key_versions, Version as KeyVersion};
use crate::pack::{base_closure, pack_key};
use crate::repo::ConfigVersion;
use crate::repo::Repository;
use crate::scan::read_chunk_list_at;
use crate::snapshot::{decode_snapshot, snapshot_copy_key, snapshot_key, Item, Snapshot};
use crate::storage::{Storage, StorageError};

/// One file a restore needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanFile {
    /// Repository-relative path.
    pub path: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Whether the file is in this copy of the repository.
    pub present: bool,
    /// Whether it is present but does not read: a pack not the size the index gives
    /// (truncated or replaced; `size` is then the expected size), a metadata file that does
    /// not decode and has no intact copy. A restore would fail on it as on a missing one.
    pub damaged: bool,
}

/// The files a restore needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// Snapshot restored.
    pub snapshot: String,
    /// Items restored.
    pub items: Vec<String>,
    /// Every file needed, metadata first, then packs.
    pub files: Vec<PlanFile>,
    /// Bytes of all needed files whose size is known.
    pub total_bytes: u64,
    /// Paths needed but not present.
    pub missing: Vec<String>,
    /// Paths present but of the wrong size (see [`PlanFile::damaged`]).
    pub damaged: Vec<String>,
    /// Whether the plan is final: every chunk list could be read, so no further pack will be
    /// discovered once the missing files are added.
    pub complete: bool,
    /// Packs holding chunk lists of the restore that are in an archive storage class: they
    /// must be restored from the archive before the plan can name the data packs they list.
    pub archived: Vec<String>,
}

impl<S: Storage> Repository<S> {
    /// Plan the restore of `item` (or of every item) of `snapshot`.
    ///
    /// # Errors
    /// [`Error::ItemNotFound`]; [`Error::Storage`].
    pub fn restore_plan(&self, snapshot: &Snapshot, item: Option<&str>) -> Result<RestorePlan> {
        let items: Vec<&Item> = match item {
            Some(name) => vec![snapshot.item(name)?],
            None => snapshot.manifest.items.iter().collect(),
        };
        let listed: HashMap<String, u64> = self.storage().list("")?.into_iter().collect();
        let indexed = self.read_listed_indexes(&listed);
        let needed = self.needed_packs(&items, &indexed);
        let mut complete = needed.complete && !indexed.pack_index.is_empty();
        let metadata = self.metadata_plan(snapshot, &listed);
        let files = plan_files(metadata, &listed, &indexed, &needed.packs);
        let total_bytes = files.iter().filter_map(|f| f.size).sum();
        let paths = |pick: fn(&PlanFile) -> bool| {
            files
                .iter()
                .filter(|f| pick(f))
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        };
        let missing = paths(|f| !f.present);
        let damaged = paths(|f| f.damaged);
        complete &= missing.is_empty() && damaged.is_empty();
        Ok(RestorePlan {
            snapshot: snapshot.id.to_hex(),
            items: items.iter().map(|i| i.name.clone()).collect(),
            files,
            total_bytes,
            missing,
            damaged,
            complete,
            archived: needed.archived.into_iter().collect(),
        })
    }

    /// The metadata files a restore reads, in order: the settings, the key files, the
    /// snapshot's manifest. Each is named by the version that serves (docs/FORMAT.md, "Metadata
    /// copies"): the file itself when it reads, else its copy under `copies/` when that does,
    /// else the file itself, marked missing or damaged.
    fn metadata_plan(&self, snapshot: &Snapshot, listed: &HashMap<String, u64>) -> Vec<PlanFile> {
        let storage = self.storage();
        let version = |path: String, reads: bool| PlanFile {
            size: listed.get(&path).copied(),
            present: listed.contains_key(&path),
            damaged: listed.contains_key(&path) && !reads,
            path,
        };
        let serves = |f: &PlanFile| f.present && !f.damaged;
        let pick = |file: PlanFile, copy: Option<PlanFile>| match copy {
            Some(c) if !serves(&file) && serves(&c) => c,
            _ => file,
        };
        let copies = self.copies();
        // The settings: config.json when it holds the settings as stored (the sealed copy,
        // when there is one, authenticates them), else the copy.
        let stored = self.stored_config().ok();
        let versions = self.config_versions().ok();
        let holds = |v: Option<&ConfigVersion>| {
            stored
                .as_ref()
                .is_some_and(|c| v.is_some_and(|v| v.holds(c)))
        };
        let config_reads = holds(versions.as_ref().map(|v| &v.file));
        let copy_reads = holds(versions.as_ref().map(|v| &v.copy));
        let mut files = vec![pick(
            version(CONFIG_KEY.to_string(), config_reads),
            copies.then(|| version(CONFIG_COPY_KEY.to_string(), copy_reads)),
        )];
        // Every key file that can serve (a restore elsewhere may use any passphrase), each by
        // its version that hashes to its name. One with no intact version opens nothing: it is
        // not needed (repair names it lost).
        for v in key_versions(storage, copies).unwrap_or_default() {
            let intact = |x: &KeyVersion| matches!(x, KeyVersion::Intact(_));
            if v.intact().is_none() {
                continue;
            }
            let copy = key_copy_key(&v.key);
            files.push(pick(
                version(v.key.clone(), intact(&v.file)),
                copies.then(|| version(copy, intact(&v.copy))),
            ));
        }
        let reads = |key: &str| {
            storage
                .get(key)
                .ok()
                .is_some_and(|data| decode_snapshot(self.keys(), snapshot.id, &data).is_ok())
        };
        let (manifest, copy) = (snapshot_key(&snapshot.id), snapshot_copy_key(&snapshot.id));
        files.push(pick(
            version(manifest.clone(), reads(&manifest)),
            copies.then(|| version(copy.clone(), reads(&copy))),
        ));
        files
    }

    /// Every index file among `listed` that can be read, merged: the first (in path order)
    /// listing a pack names the index file a restore needs for it.
    ///
    /// When an index file cannot be read (damaged, unreadable), the packs no readable index
    /// file lists are found through their `.idx` files instead, as restores find them: the
    /// plan then names each such pack's `.idx` as the file its entries come from.
    fn read_listed_indexes(&self, listed: &HashMap<String, u64>) -> Indexed {
        let mut indexed = Indexed::default();
        let mut index_keys: Vec<&String> = listed
            .keys()
            .filter(|k| crate::layout::is(crate::layout::Kind::Index, k))
            .collect();
        index_keys.sort();
        let mut sources: Vec<(String, Vec<crate::index::IndexedPack>)> = Vec::new();
        let mut damaged = false;
        for key in index_keys {
            let decoded = self
                .storage()
                .get(key)
                .map_err(Error::from)
                .and_then(|data| decode_index_file(self.keys(), key, &data));
            match decoded {
                Ok(packs) => sources.push((key.clone(), packs)),
                Err(_) => damaged = true,
            }
        }
        if damaged {
            let known: std::collections::HashSet<Id> = sources
                .iter()
                .flat_map(|(_, packs)| packs.iter().map(|p| p.id))
                .collect();
            let mut extra: Vec<(&String, Id, u64)> = listed
                .iter()
                .filter_map(|(k, size)| match crate::layout::classify(k) {
                    Some((crate::layout::Kind::Pack, Some(id))) if !known.contains(&id) => {
                        Some((k, id, *size))
                    }
                    _ => None,
                })
                .collect();
            extra.sort();
            for (_, id, size) in extra {
                let key = crate::pack::idx_key(&id);
                let Ok(data) = self.storage().get(&key) else {
                    continue;
                };
                if let Ok((pid, psize, entries)) = crate::pack::decode_idx(self.keys(), &key, &data)
                {
                    if pid == id && psize == size {
                        sources.push((key, vec![crate::index::IndexedPack { id, size, entries }]));
                    }
                }
            }
        }
        for (key, packs) in sources {
            for p in packs {
                indexed
                    .pack_index
                    .entry(p.id)
                    .or_insert_with(|| key.clone());
                indexed.pack_size.insert(p.id, p.size);
                for e in &p.entries {
                    let loc = Location {
                        pack: p.id,
                        entry: *e,
                    };
                    // A full copy of a chunk wins over a delta of it, as in the index.
                    match indexed.blob_pack.get_mut(&e.id) {
                        Some(old) if old.entry.bases().is_some() && e.bases().is_none() => {
                            *old = loc
                        }
                        Some(_) => {}
                        None => {
                            indexed.blob_pack.insert(e.id, loc);
                        }
                    }
                }
            }
        }
        indexed
    }

    /// The packs holding the items' chunk lists and, for the lists that can be read, their
    /// chunks. Not complete when a list or chunk is in no index, or a list cannot be read
    /// (missing, damaged, or in an archive class: then it is named in `archived`).
    fn needed_packs(&self, items: &[&Item], indexed: &Indexed) -> NeededPacks {
        let mut needed = NeededPacks {
            complete: !indexed.blob_pack.is_empty()
                || items.iter().all(|i| i.chunk_lists.is_empty()),
            ..NeededPacks::default()
        };
        for list in items.iter().flat_map(|it| &it.chunk_lists) {
            let Some(loc) = indexed.blob_pack.get(list).copied() else {
                needed.complete = false;
                continue;
            };
            needed.packs.insert(loc.pack);
            let ids = match read_chunk_list_at(self.storage(), self.keys(), &loc) {
                Ok(ids) => ids,
                Err(e) => {
                    if let Error::Storage(StorageError::Archived { key, .. }) = e {
                        needed.archived.insert(key);
                    }
                    needed.complete = false;
                    continue;
                }
            };
            for id in ids {
                let Some(l) = indexed.blob_pack.get(&id) else {
                    needed.complete = false;
                    continue;
                };
                needed.packs.insert(l.pack);
                // A delta is restored from its bases too, and theirs.
                let bases_of = |b: &Id| indexed.blob_pack.get(b).and_then(|l| l.entry.bases());
                for base in base_closure([id], bases_of) {
                    match indexed.blob_pack.get(&base) {
                        Some(b) => {
                            needed.packs.insert(b.pack);
                        }
                        None => needed.complete = false,
                    }
                }
            }
        }
        needed
    }
}

/// The index files found, merged.
#[derive(Default)]
struct Indexed {
    /// Where each blob is (the first index listing it).
    blob_pack: HashMap<Id, Location>,
    /// The index file a restore reads for each pack.
    pack_index: BTreeMap<Id, String>,
    /// Each pack's size as indexed.
    pack_size: HashMap<Id, u64>,
}

/// What [`Repository::needed_packs`] found.
#[derive(Default)]
struct NeededPacks {
    packs: BTreeSet<Id>,
    archived: BTreeSet<String>,
    complete: bool,
}

/// The files of a plan in the order they are needed: the metadata files (see
/// [`Repository::metadata_plan`]), the index files of the `packs` (or the index folder, missing,
/// when no index could be read), then the packs; each marked present (in `listed`) and damaged
/// (present with another size than indexed).
fn plan_files(
    mut files: Vec<PlanFile>,
    listed: &HashMap<String, u64>,
    indexed: &Indexed,
    packs: &BTreeSet<Id>,
) -> Vec<PlanFile> {
    let file = |path: String, known: Option<u64>| {
        let found = listed.get(&path).copied();
        PlanFile {
            present: found.is_some(),
            damaged: found.is_some() && known.is_some() && found != known,
            size: known.or(found),
            path,
        }
    };
    if indexed.pack_index.is_empty() {
        files.push(PlanFile {
            path: INDEX_PREFIX.to_string(),
            size: None,
            present: false,
            damaged: false,
        });
    }
    let index_files: BTreeSet<&String> = packs
        .iter()
        .filter_map(|p| indexed.pack_index.get(p))
        .collect();
    files.extend(index_files.into_iter().map(|k| file(k.clone(), None)));
    files.extend(
        packs
            .iter()
            .map(|p| file(pack_key(p), indexed.pack_size.get(p).copied())),
    );
    files
}
