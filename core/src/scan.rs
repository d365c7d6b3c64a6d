//! Whole-repository scans that several operations share: every index file merged into one
//! view, and the packs present in storage. Verify, prune, repair and reindex read the
//! repository through these, so they agree on what "indexed" and "present" mean.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::blob::{decode_blob, decode_chunk_list};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{decode_index_file, IndexedPack, Location};
use crate::layout::Kind;
use crate::pack::{pack_key, PackEntry};
use crate::storage::{Storage, StorageError};

/// Every indexed pack with its size and entries, merged over all readable index files.
pub struct IndexView {
    /// Pack id → (pack size in bytes, its entries), from the first index file naming it.
    pub packs: BTreeMap<Id, (u64, Vec<PackEntry>)>,
    /// Blob id → where it is (the first location any index file gives).
    pub blobs: HashMap<Id, Location>,
}

/// Read every index file (in name order) into one [`IndexView`]; returns it and the bytes read.
/// A file that does not decode is passed to `on_bad` with its key and skipped; a file deleted
/// since the listing is skipped.
///
/// # Errors
/// [`Error::Storage`] when listing or reading fails otherwise.
pub fn read_index_view(
    storage: &dyn Storage,
    repo_keys: &Keys,
    mut on_bad: impl FnMut(&str, Error),
) -> Result<(IndexView, u64)> {
    let mut view = IndexView {
        packs: BTreeMap::new(),
        blobs: HashMap::new(),
    };
    let mut read = 0u64;
    let mut files = crate::index::list_index_files(storage)?;
    files.sort();
    for (key, _) in files {
        let data = match storage.get(&key) {
            Ok(d) => d,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        read += data.len() as u64;
        match decode_index_file(repo_keys, &key, &data) {
            Ok(packs) => add_packs(&mut view, packs),
            Err(e) => on_bad(&key, e),
        }
    }
    Ok((view, read))
}

/// Merge `packs` into `view` (entries already present win).
pub fn add_packs(view: &mut IndexView, packs: Vec<IndexedPack>) {
    for p in packs {
        for e in &p.entries {
            view.blobs.entry(e.id).or_insert(Location {
                pack: p.id,
                entry: *e,
            });
        }
        view.packs.entry(p.id).or_insert((p.size, p.entries));
    }
}

/// Packs present in storage under their own names: id → size, and which have an `.idx`.
///
/// # Errors
/// [`Error::Storage`] when listing fails.
pub fn list_packs(storage: &dyn Storage) -> Result<(HashMap<Id, u64>, HashSet<Id>)> {
    let mut packs = HashMap::new();
    let mut idx = HashSet::new();
    // Only names this repository writes: a pack copied to another fan-out folder or renamed
    // (upper-case hex) is not where readers look, so it is not present.
    for (key, size) in storage.list(crate::layout::PACK_DATA_PREFIX)? {
        match crate::layout::classify(&key) {
            Some((Kind::Pack, Some(id))) => {
                packs.insert(id, size);
            }
            Some((Kind::PackIdx, Some(id))) => {
                idx.insert(id);
            }
            _ => {}
        }
    }
    Ok((packs, idx))
}

/// The chunk ids in chunk list `list`, read from its pack at the location `view` gives and
/// checked against its id.
///
/// # Errors
/// [`Error::Corruption`] naming the chunk list when it is not indexed, does not decode or has a
/// length that is not a multiple of 32; [`Error::Storage`] when its pack cannot be read.
pub fn read_chunk_list(
    storage: &dyn Storage,
    keys: &Keys,
    view: &IndexView,
    list: &Id,
) -> Result<Vec<Id>> {
    let loc = view
        .blobs
        .get(list)
        .ok_or_else(|| Error::corruption(format!("chunk list {list}"), "not in the index"))?;
    read_chunk_list_at(storage, keys, loc)
}

/// The chunk ids in the chunk list stored at `loc`, checked against its id.
///
/// # Errors
/// As [`read_chunk_list`], but for the lookup.
pub fn read_chunk_list_at(storage: &dyn Storage, keys: &Keys, loc: &Location) -> Result<Vec<Id>> {
    let stored = storage.get_range(
        &pack_key(&loc.pack),
        loc.entry.offset as u64,
        loc.entry.stored_len as u64,
    )?;
    let raw = decode_blob(keys, loc, &stored)?;
    decode_chunk_list(&raw)
        .map_err(|why| Error::corruption(format!("chunk list {}", loc.entry.id), why))
}
