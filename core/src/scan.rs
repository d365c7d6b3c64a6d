//! Whole-repository scans that several operations share: every index file merged into one
//! view, and the packs present in storage. Verify, prune, repair and reindex read the
//! repository through these, so they agree on what "indexed" and "present" mean.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use crate::blob::{decode_blob, decode_chunk_list, decode_intermediate_base, read_blob};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{decode_index_file, IndexedPack, Location};
use crate::layout::Kind;
use crate::pack::{pack_key, PackEntry};
use crate::parallel::par_map;
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
            Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
            // One index file that cannot be read is damage to that file, as a bad one is.
            Err(e) => {
                on_bad(&key, e.into());
                continue;
            }
        };
        read += data.len() as u64;
        match decode_index_file(repo_keys, &key, &data) {
            Ok(packs) => add_packs(&mut view, packs),
            Err(e) => on_bad(&key, e),
        }
    }
    Ok((view, read))
}

/// Merge `packs` into `view`: entries already present win, except that a full copy of a
/// chunk wins over a delta of it (as in the in-memory index).
pub fn add_packs(view: &mut IndexView, packs: Vec<IndexedPack>) {
    for p in packs {
        for e in &p.entries {
            let loc = Location {
                pack: p.id,
                entry: *e,
            };
            match view.blobs.get_mut(&e.id) {
                Some(old) if old.entry.bases().is_some() && e.bases().is_none() => *old = loc,
                Some(_) => {}
                None => {
                    view.blobs.insert(e.id, loc);
                }
            }
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
    let raw = decode_blob(keys, loc, &stored_blob(storage, loc)?, None)?;
    decode_chunk_list(&raw)
        .map_err(|why| Error::corruption(format!("chunk list {}", loc.entry.id), why))
}

/// The stored bytes of the blob at `loc`, read with one ranged request.
fn stored_blob(storage: &dyn Storage, loc: &Location) -> Result<Vec<u8>> {
    let stored = storage.get_range(
        &pack_key(&loc.pack),
        loc.entry.offset as u64,
        loc.entry.stored_len as u64,
    )?;
    if (stored.len() as u64) < loc.entry.stored_len as u64 {
        return Err(Error::corruption(
            format!("pack {}", loc.pack),
            format!("truncated (chunk {} lies past its end)", loc.entry.id),
        ));
    }
    Ok(stored)
}

/// Gap between two blobs of one pack below which they are read in one request.
const COALESCE_GAP: u64 = 256 << 10;

/// Read the stored bytes of `locs` with one ranged read per run of nearby blobs of a pack (all
/// requests issued at once: object storage runs them concurrently): the buffers read, and for
/// each location its buffer and range (no per-blob copy).
///
/// # Errors
/// [`Error::Storage`] (`NotFound` for a pack that is gone); [`Error::Corruption`] for a pack
/// shorter than a blob's range.
#[allow(clippy::type_complexity)]
pub fn fetch_blobs(
    storage: &dyn Storage,
    locs: &[Location],
) -> Result<(Vec<Vec<u8>>, Vec<(usize, Range<usize>)>)> {
    // Coalesce neighbouring blobs of one pack into one read, then issue all reads at once
    // (object storage runs them concurrently).
    let mut groups: Vec<(Range<usize>, u64)> = Vec::new();
    let mut requests: Vec<(String, u64, u64)> = Vec::new();
    let mut i = 0;
    while i < locs.len() {
        let first = &locs[i];
        let start = first.entry.offset as u64;
        let mut end = start + first.entry.stored_len as u64;
        let mut j = i + 1;
        while j < locs.len()
            && locs[j].pack == first.pack
            && (locs[j].entry.offset as u64) >= start
            && (locs[j].entry.offset as u64) <= end + COALESCE_GAP
        {
            end = end.max(locs[j].entry.offset as u64 + locs[j].entry.stored_len as u64);
            j += 1;
        }
        requests.push((pack_key(&first.pack), start, end - start));
        groups.push((i..j, start));
        i = j;
    }
    let results = storage.get_ranges(&requests);
    let mut buffers = Vec::with_capacity(groups.len());
    let mut ranges = Vec::with_capacity(locs.len());
    for (((members, start), (_, _, len)), data) in groups.into_iter().zip(&requests).zip(results) {
        let first = &locs[members.start];
        let data = data?;
        if (data.len() as u64) < *len {
            return Err(Error::corruption(
                format!("pack {}", first.pack),
                format!("truncated (chunk {} lies past its end)", first.entry.id),
            ));
        }
        for l in &locs[members] {
            let o = (l.entry.offset as u64 - start) as usize;
            ranges.push((buffers.len(), o..o + l.entry.stored_len as usize));
        }
        buffers.push(data);
    }
    Ok((buffers, ranges))
}

/// Why [`read_with_bases`] could not give a chunk's plaintext.
#[derive(Debug)]
pub enum Unread {
    /// No index names it (a base a delta names, usually).
    NotIndexed,
    /// Its pack (this id) is gone.
    PackMissing(Id),
    /// Reading or decoding it failed: damage, or a storage error other than a missing pack.
    Failed(Error),
    /// Its base (this id) could not be read, or its bases form a cycle (damage).
    BaseUnread(Id),
}

/// What [`read_with_bases`] read.
#[derive(Debug, Default)]
pub struct Plaintexts {
    /// Chunk id → plaintext, for every chunk asked for that could be read (and, for a delta,
    /// decoded and checked against its id).
    pub plain: HashMap<Id, Arc<Vec<u8>>>,
    /// What could not be, with why, in the order met.
    pub unread: Vec<(Id, Unread)>,
    /// Stored bytes of the blobs read.
    pub bytes_read: u64,
}

/// The plaintexts of the chunks at `want` and of every chunk they need (a delta's bases, their
/// bases, …, located with `lookup`), read in coalesced ranged requests issued at once, then
/// decoded on all cores, bases before the deltas that need them. With `check_wanted`, each
/// chunk of `want` is checked as [`read_blob`] checks it (restore hands them out; ingest, in a
/// repository without encryption, builds deltas on them); the others only serve as bases and are not ([`decode_intermediate_base`]):
/// a wrong one makes the delta built on it fail its check. Verify and prune pass `false`: they
/// want bases only to decode deltas that they check in full. Nothing is an error: what
/// cannot be read is listed in [`Plaintexts::unread`]. When a coalesced read fails: with
/// `each_alone`, each blob is read alone, so that one missing pack costs only the chunks in it
/// (verify, ingest, prune); without, the first failure is the only entry of `unread` and
/// nothing is decoded (restore, which retries the whole batch).
pub fn read_with_bases(
    storage: &dyn Storage,
    keys: &Keys,
    want: &[Location],
    lookup: impl Fn(&Id) -> Option<Location>,
    each_alone: bool,
    check_wanted: bool,
) -> Plaintexts {
    let mut out = Plaintexts::default();
    let mut seen: HashSet<Id> = HashSet::new();
    let mut locs: Vec<Location> = want
        .iter()
        .filter(|l| seen.insert(l.entry.id))
        .copied()
        .collect();
    let mut i = 0;
    while i < locs.len() {
        for b in locs[i].entry.base_ids() {
            if seen.insert(b) {
                match lookup(&b) {
                    Some(l) => locs.push(l),
                    None => out.unread.push((b, Unread::NotIndexed)),
                }
            }
        }
        i += 1;
    }
    locs.sort_by_key(|l| (l.pack, l.entry.offset));
    let fetched = match fetch_blobs(storage, &locs) {
        Ok(f) => Some(f),
        Err(e) if !each_alone => {
            let why = match e {
                Error::Storage(StorageError::NotFound(key)) => {
                    let l = locs
                        .iter()
                        .find(|l| pack_key(&l.pack) == key)
                        .unwrap_or(&locs[0]);
                    (l.entry.id, Unread::PackMissing(l.pack))
                }
                e => (locs[0].entry.id, Unread::Failed(e)),
            };
            out.unread.push(why);
            return out;
        }
        Err(_) => None,
    };
    let singles: Vec<Option<Vec<u8>>> = match fetched {
        Some(_) => Vec::new(),
        None => locs
            .iter()
            .map(|l| match stored_blob(storage, l) {
                Ok(b) => Some(b),
                Err(Error::Storage(StorageError::NotFound(_))) => {
                    out.unread.push((l.entry.id, Unread::PackMissing(l.pack)));
                    None
                }
                Err(e) => {
                    out.unread.push((l.entry.id, Unread::Failed(e)));
                    None
                }
            })
            .collect(),
    };
    let stored_of = |k: usize| -> Option<&[u8]> {
        match &fetched {
            Some((buffers, ranges)) => {
                let (b, r) = &ranges[k];
                Some(&buffers[*b][r.clone()])
            }
            None => singles[k].as_deref(),
        }
    };
    let mut pending: Vec<usize> = (0..locs.len())
        .filter(|k| stored_of(*k).is_some())
        .collect();
    out.bytes_read = pending
        .iter()
        .map(|k| locs[*k].entry.stored_len as u64)
        .sum();
    // A base only needed to decode others is dropped once they are decoded: what is held at
    // once is what was asked for plus about two levels of closures.
    let wanted: HashSet<Id> = want.iter().map(|l| l.entry.id).collect();
    let mut dependents: HashMap<Id, usize> = HashMap::new();
    for l in &locs {
        for b in l.entry.base_ids() {
            *dependents.entry(b).or_default() += 1;
        }
    }
    // One round per level of the closures: each decodes what has every base decoded.
    loop {
        let plain = &out.plain;
        let (ready, waiting): (Vec<usize>, Vec<usize>) = pending
            .into_iter()
            .partition(|k| locs[*k].entry.base_ids().all(|b| plain.contains_key(&b)));
        pending = waiting;
        if ready.is_empty() {
            break;
        }
        let decoded = par_map(ready.clone(), |k| {
            let loc = &locs[k];
            let prefix = loc
                .entry
                .bases()
                .and_then(|b| b.prefix(|id| plain.get(id).map(|p| p.as_slice())));
            let stored = stored_of(k).expect("read");
            if check_wanted && wanted.contains(&loc.entry.id) {
                read_blob(keys, loc, stored, prefix.as_deref())
            } else {
                decode_intermediate_base(keys, loc, stored, prefix.as_deref())
            }
        });
        for (k, result) in ready.into_iter().zip(decoded) {
            let id = locs[k].entry.id;
            match result {
                Ok(p) => {
                    out.plain.insert(id, Arc::new(p));
                }
                Err(e) => out.unread.push((id, Unread::Failed(e))),
            }
            for b in locs[k].entry.base_ids() {
                let left = dependents.get_mut(&b).expect("counted");
                *left -= 1;
                if *left == 0 && !wanted.contains(&b) {
                    out.plain.remove(&b);
                }
            }
        }
    }
    for k in pending {
        let e = &locs[k].entry;
        let base = e.base_ids().find(|b| !out.plain.contains_key(b));
        out.unread
            .push((e.id, Unread::BaseUnread(base.expect("a base is missing"))));
    }
    out
}
