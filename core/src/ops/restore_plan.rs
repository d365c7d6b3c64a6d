//! Restore plans: exactly which files restoring an item (or a snapshot) needs, so that a user
//! can fetch only those from object storage and restore them elsewhere (e.g. in a browser).
//!
//! A plan can be made from a partial copy of a repository: what cannot be read yet is listed
//! as missing. Chunk lists live in packs, so a copy that lacks the packs holding an item's
//! chunk lists yields a plan naming those packs first; once they are there, the plan names the
//! data packs too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::config::CONFIG_KEY;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{decode_index_file, Location, INDEX_PREFIX};
use crate::pack::pack_key;
use crate::repo::Repository;
use crate::scan::read_chunk_list_at;
use crate::snapshot::{snapshot_key, Snapshot};
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
    /// Whether it is present but not the size the index gives (truncated or replaced): a
    /// restore would fail on it as on a missing one. `size` is then the expected size.
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
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let items: Vec<&crate::snapshot::Item> = match item {
            Some(name) => vec![snapshot.item(name)?],
            None => snapshot.manifest.items.iter().collect(),
        };
        let listed: HashMap<String, u64> = storage.list("")?.into_iter().collect();

        // Which index file lists which pack (and every blob's pack).
        let mut blob_pack: HashMap<Id, Location> = HashMap::new();
        let mut pack_index: BTreeMap<Id, String> = BTreeMap::new();
        let mut pack_size: HashMap<Id, u64> = HashMap::new();
        let mut index_keys: Vec<&String> = listed
            .keys()
            .filter(|k| crate::layout::is(crate::layout::Kind::Index, k))
            .collect();
        index_keys.sort();
        for key in index_keys {
            let Ok(data) = storage.get(key) else { continue };
            let Ok(packs) = decode_index_file(keys, key, &data) else {
                continue;
            };
            for p in packs {
                pack_index.entry(p.id).or_insert_with(|| key.clone());
                pack_size.insert(p.id, p.size);
                for e in &p.entries {
                    blob_pack.entry(e.id).or_insert(Location {
                        pack: p.id,
                        entry: *e,
                    });
                }
            }
        }

        let mut packs: BTreeSet<Id> = BTreeSet::new();
        let mut archived: BTreeSet<String> = BTreeSet::new();
        let mut complete = !blob_pack.is_empty() || items.iter().all(|i| i.chunk_lists.is_empty());
        for it in &items {
            for list in &it.chunk_lists {
                let Some(loc) = blob_pack.get(list).copied() else {
                    complete = false;
                    continue;
                };
                packs.insert(loc.pack);
                let raw = match read_chunk_list_at(storage, keys, &loc) {
                    Ok(ids) => Some(ids),
                    Err(Error::Storage(StorageError::Archived { key, .. })) => {
                        archived.insert(key);
                        None
                    }
                    Err(_) => None,
                };
                match raw {
                    Some(ids) => {
                        for id in ids {
                            match blob_pack.get(&id) {
                                Some(l) => {
                                    packs.insert(l.pack);
                                }
                                None => complete = false,
                            }
                        }
                    }
                    None => complete = false,
                }
            }
        }

        let mut files = Vec::new();
        let add = |files: &mut Vec<PlanFile>, path: String, known: Option<u64>| {
            let found = listed.get(&path).copied();
            files.push(PlanFile {
                present: found.is_some(),
                damaged: found.is_some() && known.is_some() && found != known,
                size: known.or(found),
                path,
            });
        };
        add(&mut files, CONFIG_KEY.to_string(), None);
        let mut key_files: Vec<&String> = listed
            .keys()
            .filter(|k| crate::layout::is(crate::layout::Kind::Key, k))
            .collect();
        key_files.sort();
        for k in key_files {
            add(&mut files, k.clone(), None);
        }
        add(&mut files, snapshot_key(&snapshot.id), None);
        let index_files: BTreeSet<&String> =
            packs.iter().filter_map(|p| pack_index.get(p)).collect();
        if pack_index.is_empty() {
            complete = false;
            files.push(PlanFile {
                path: INDEX_PREFIX.to_string(),
                size: None,
                present: false,
                damaged: false,
            });
        }
        for k in index_files {
            add(&mut files, k.clone(), None);
        }
        for p in &packs {
            add(&mut files, pack_key(p), pack_size.get(p).copied());
        }
        let total_bytes = files.iter().filter_map(|f| f.size).sum();
        let missing = files
            .iter()
            .filter(|f| !f.present)
            .map(|f| f.path.clone())
            .collect();
        let damaged: Vec<String> = files
            .iter()
            .filter(|f| f.damaged)
            .map(|f| f.path.clone())
            .collect();
        complete &= damaged.is_empty();
        Ok(RestorePlan {
            snapshot: snapshot.id.to_hex(),
            items: items.iter().map(|i| i.name.clone()).collect(),
            files,
            total_bytes,
            missing,
            damaged,
            complete,
            archived: archived.into_iter().collect(),
        })
    }
}
