//! The global index: which pack holds each blob.
//!
//! On storage it is a set of write-once files under `index/`, each listing the packs one writer
//! produced (so concurrent writers only ever add files):
//! ```text
//! index file = "CA-INDX1" ‖ seal("ca index", u32le(p) ‖ (pack_id[32] ‖ u64le(size) ‖ u32le(n) ‖ entry*n)*p)
//! ```
//! In memory it is one hash map from blob id to location, merged from every file.

pub use crate::layout::{INDEX_MAGIC, INDEX_PREFIX};
use std::collections::{HashMap, HashSet};

use crate::compress::Compression;
use crate::crypto::{Keys, NONCE_LEN};
use crate::delta::{Features, MAX_DELTA_READS};
use crate::error::{Error, Result};
use crate::id::{Id, ID_LEN};
use crate::pack::{
    base_closure, decode_entries_prefix, encode_entries, entries_len, Bases, BlobExtra, PackEntry,
    MAX_BASES, MAX_BLOB_LEN,
};

/// Seal label of index files.
pub const INDEX_LABEL: &[u8] = b"ca index";

/// Every index file of the repository, with sizes (other files under `index/` are foreign:
/// never read, see [`crate::layout`]).
pub fn list_index_files(
    storage: &dyn crate::storage::Storage,
) -> crate::error::Result<Vec<(String, u64)>> {
    Ok(crate::layout::only(
        crate::layout::Kind::Index,
        storage.list(INDEX_PREFIX)?,
    ))
}

/// The storage key of an index file.
pub fn index_key(id: &Id) -> String {
    format!("{INDEX_PREFIX}{}.index", id.to_hex())
}

/// One pack as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// Pack id.
    pub id: Id,
    /// Pack size in bytes.
    pub size: u64,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

/// Encode an index file listing `packs`.
pub fn encode_index_file(keys: &Keys, packs: &[IndexedPack], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        body.extend_from_slice(&p.id.0);
        body.extend_from_slice(&p.size.to_le_bytes());
        encode_entries(&p.entries, &mut body);
    }
    let mut out = INDEX_MAGIC.to_vec();
    out.extend_from_slice(&keys.seal(INDEX_LABEL, &body, nonce));
    out
}

/// Decode an index file stored under `key`.
pub fn decode_index_file(keys: &Keys, key: &str, data: &[u8]) -> Result<Vec<IndexedPack>> {
    let bad = |reason: String| Error::corruption(format!("index file {key}"), reason);
    let sealed = data
        .strip_prefix(INDEX_MAGIC.as_slice())
        .ok_or_else(|| bad("bad magic".into()))?;
    let body = keys.open(INDEX_LABEL, sealed).map_err(|r| bad(r.into()))?;
    let mut rest = body.as_slice();
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        if rest.len() < n {
            return Err(bad("truncated".into()));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
    let mut packs = Vec::new();
    for _ in 0..count {
        let id = Id::from_slice(&take(&mut rest, ID_LEN)?).expect("32 bytes");
        let size = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let (entries, used) =
            decode_entries_prefix(rest, size).map_err(|r| bad(format!("pack {id}: {r}")))?;
        rest = &rest[used..];
        packs.push(IndexedPack { id, size, entries });
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    Ok(packs)
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Pack id.
    pub pack: Id,
    /// The blob's entry in that pack.
    pub entry: PackEntry,
}

/// Size of an index file listing packs with these (entry, extra) counts.
pub fn index_file_size(keys: &Keys, counts: &[(usize, usize)]) -> u64 {
    let body: usize = 4 + counts
        .iter()
        .map(|&(n, x)| ID_LEN + 8 + entries_len(n, x))
        .sum::<usize>();
    (INDEX_MAGIC.len() + keys.seal_overhead() + body) as u64
}

/// One blob's location, packed into 46 bytes with no alignment padding: the id, the pack's
/// slot in [`Index::packs`] with the compression code and blob kind in its top bits, the offset,
/// and the stored and raw lengths as 24-bit numbers (no blob exceeds [`MAX_BLOB_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    id: [u8; ID_LEN],
    pack_flags: [u8; 4],
    offset: [u8; 4],
    lens: [u8; 6],
}

const PACK_BITS: u32 = 28;
const PACK_MASK: u32 = (1 << PACK_BITS) - 1;

impl Slot {
    fn new(pack: u32, e: &PackEntry) -> Self {
        assert!(pack <= PACK_MASK, "more than 2^28 packs in one index");
        assert!(
            e.stored_len <= MAX_BLOB_LEN && e.raw_len <= MAX_BLOB_LEN,
            "blob lengths are checked when entries are decoded"
        );
        let kind = match e.kind {
            crate::pack::BlobKind::Data => 0,
            crate::pack::BlobKind::ChunkList => 1,
        };
        let flags = pack | (e.compression.code() as u32) << PACK_BITS | kind << 30;
        let mut lens = [0u8; 6];
        lens[..3].copy_from_slice(&e.stored_len.to_le_bytes()[..3]);
        lens[3..].copy_from_slice(&e.raw_len.to_le_bytes()[..3]);
        Slot {
            id: e.id.0,
            pack_flags: flags.to_le_bytes(),
            offset: e.offset.to_le_bytes(),
            lens,
        }
    }

    fn flags(&self) -> u32 {
        u32::from_le_bytes(self.pack_flags)
    }

    fn pack(&self) -> usize {
        (self.flags() & PACK_MASK) as usize
    }

    /// Whether this is a full data chunk (not a chunk list, not a delta): one that may serve
    /// as a base.
    fn is_full_chunk(&self) -> bool {
        let flags = self.flags();
        flags >> 30 & 1 == 0 && (flags >> PACK_BITS) & 3 != Compression::ZstdDelta.code() as u32
    }

    /// Whether this is a data chunk (full or delta), not a chunk list.
    fn is_data_chunk(&self) -> bool {
        self.flags() >> 30 & 1 == 0
    }

    fn entry(&self) -> PackEntry {
        let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
        let flags = self.flags();
        PackEntry {
            id: Id(self.id),
            offset: u32::from_le_bytes(self.offset),
            stored_len: u24(&self.lens[..3]),
            raw_len: u24(&self.lens[3..]),
            compression: crate::compress::Compression::from_code(((flags >> PACK_BITS) & 3) as u8)
                .expect("only valid codes are stored"),
            kind: if flags >> 30 & 1 == 1 {
                crate::pack::BlobKind::ChunkList
            } else {
                crate::pack::BlobKind::Data
            },
            extra: BlobExtra::None,
        }
    }
}

/// Builds an [`Index`] from many packs at once (loading index files): one in-place sort at the
/// end. As with [`Index::add_pack`], a blob listed twice keeps its first location.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    index: Index,
    pack_slot: HashMap<Id, u32>,
    all: Vec<Slot>,
    bases: HashMap<Id, Bases>,
    features: Vec<u64>,
}

impl IndexBuilder {
    /// Nothing added yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add every blob of a pack.
    pub fn add_pack(&mut self, pack: Id, size: u64, entries: &[PackEntry]) {
        let packs = &mut self.index.packs;
        let slot = *self.pack_slot.entry(pack).or_insert_with(|| {
            packs.push((pack, size));
            (packs.len() - 1) as u32
        });
        self.all.extend(entries.iter().map(|e| Slot::new(slot, e)));
        for e in entries {
            if let Some(bases) = e.bases() {
                self.bases.entry(e.id).or_insert(bases);
            }
            if let Some(f) = e.features() {
                self.features.extend(feature_keys(&f, &e.id));
            }
        }
    }

    /// The index.
    pub fn finish(self) -> Index {
        let IndexBuilder {
            mut index,
            pack_slot,
            mut all,
            mut bases,
            mut features,
        } = self;
        drop(pack_slot);
        // Pack slots are numbered in the order packs were first added, so ordering equal ids by
        // slot keeps the first location first, and dedup keeps it (an in-place sort: no buffer).
        // A full copy of a chunk wins over a delta of it (it needs nothing else to be read).
        all.sort_unstable_by(|a, b| {
            a.id.cmp(&b.id)
                .then(b.is_full_chunk().cmp(&a.is_full_chunk()))
                .then(a.pack().cmp(&b.pack()))
        });
        all.dedup_by(|later, first| later.id == first.id);
        all.shrink_to_fit();
        index.sorted = all;
        // A chunk stored both ways keeps its first location: its base only if that is a delta.
        bases.retain(|id, _| index.find_sorted(id).is_some_and(|s| !s.is_full_chunk()));
        bases.shrink_to_fit();
        index.bases = bases;
        features.sort_unstable();
        features.dedup();
        features.shrink_to_fit();
        index.features = features;
        let mut order: Vec<u32> = (0..index.packs.len() as u32).collect();
        order.sort_unstable_by_key(|&i| index.packs[i as usize].0);
        index.pack_order = order;
        index
    }
}

/// The resemblance-table keys of a data chunk: per super-feature, its top 32 bits above the
/// first 4 bytes of the chunk id (8 bytes each: the id is found again by prefix in the index).
fn feature_keys<'a>(f: &'a Features, id: &'a Id) -> impl Iterator<Item = u64> + 'a {
    f.iter().map(move |sf| feature_key(*sf, id))
}

fn feature_key(top: u32, id: &Id) -> u64 {
    (top as u64) << 32 | u32::from_be_bytes(id.0[..4].try_into().expect("4 bytes")) as u64
}

/// Recent additions are folded into the sorted array once this many have gathered (a hash map of
/// them costs ~100 bytes each; folding moves the array once).
const RECENT_LIMIT: usize = 1 << 14;

/// The in-memory global index: 46 bytes per blob in one sorted array (binary search), plus a
/// small hash map of recent additions that is merged into the array in place. A hash map of
/// every blob would take 120–150 bytes per blob. Packs are a list of (id, size) and a sorted
/// permutation of it for lookups by id: 44 bytes per pack.
///
/// With delta encoding: each delta's bases (a hash map, about 130 bytes per delta chunk), and
/// the resemblance table for finding bases: 8 bytes per feature of each data chunk that has
/// features (64 bytes per chunk, 640 MB at 10 M chunks), in a sorted array; recent additions
/// (with their full ids) in a small hash map folded in with the blobs.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<(Id, u64)>,
    pack_order: Vec<u32>,
    sorted: Vec<Slot>,
    recent: HashMap<Id, Slot>,
    /// Delta chunk → its base chunks.
    bases: HashMap<Id, Bases>,
    /// Sorted [`feature_keys`] of the chunks in `sorted`.
    features: Vec<u64>,
    /// Feature → the chunks in `recent` that have it.
    recent_features: HashMap<u32, Vec<Id>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot_of(&mut self, pack: Id, size: u64) -> u32 {
        let packs = &mut self.packs;
        match self
            .pack_order
            .binary_search_by(|&i| packs[i as usize].0.cmp(&pack))
        {
            Ok(pos) => self.pack_order[pos],
            Err(pos) => {
                packs.push((pack, size));
                let slot = (packs.len() - 1) as u32;
                self.pack_order.insert(pos, slot);
                slot
            }
        }
    }

    /// Add every blob of a pack; a blob already indexed elsewhere keeps its first location.
    pub fn add_pack(&mut self, pack: Id, size: u64, entries: &[PackEntry]) {
        let slot = self.slot_of(pack, size);
        for e in entries {
            let new = Slot::new(slot, e);
            match self.find(&e.id).map(Slot::is_full_chunk) {
                // A full copy of a chunk stored as a delta replaces it (it needs nothing else).
                Some(false) if new.is_full_chunk() && e.kind == crate::pack::BlobKind::Data => {
                    self.bases.remove(&e.id);
                    self.replace(new);
                    continue;
                }
                Some(_) => continue,
                None => {}
            }
            self.recent.insert(e.id, new);
            if let Some(bases) = e.bases() {
                self.bases.insert(e.id, bases);
            }
            for sf in e.features().into_iter().flatten() {
                self.recent_features.entry(sf).or_default().push(e.id);
            }
        }
        if self.recent.len() >= RECENT_LIMIT {
            self.merge();
        }
    }

    /// Fold the recent additions into the sorted array in place, from the back (the array grows
    /// by exactly their number: no second copy, no growth slack).
    fn merge(&mut self) {
        let mut keys: Vec<u64> = self
            .recent_features
            .drain()
            .flat_map(|(top, ids)| ids.into_iter().map(move |id| feature_key(top, &id)))
            .collect();
        self.recent_features.shrink_to(RECENT_LIMIT);
        keys.sort_unstable();
        let merged = merge_sorted(std::mem::take(&mut self.features), keys);
        self.features = merged;
        let mut recent: Vec<Slot> = self.recent.drain().map(|(_, s)| s).collect();
        self.recent.shrink_to(RECENT_LIMIT);
        let Some(&filler) = recent.first() else {
            return;
        };
        recent.sort_unstable_by_key(|s| s.id);
        let old = self.sorted.len();
        self.sorted.reserve_exact(recent.len());
        self.sorted.resize(old + recent.len(), filler);
        let (mut i, mut j) = (old, recent.len());
        for k in (0..self.sorted.len()).rev() {
            // Ids in `recent` are never in `sorted` (checked when they were added).
            if j == 0 {
                break;
            }
            if i > 0 && self.sorted[i - 1].id > recent[j - 1].id {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = recent[j - 1];
                j -= 1;
            }
        }
    }

    /// Put `slot` in the place of the slot of the same id.
    fn replace(&mut self, slot: Slot) {
        let id = Id(slot.id);
        if let Some(s) = self.recent.get_mut(&id) {
            *s = slot;
        } else if let Ok(i) = self.sorted.binary_search_by(|s| s.id.cmp(&slot.id)) {
            self.sorted[i] = slot;
        }
    }

    fn find_sorted(&self, id: &Id) -> Option<&Slot> {
        self.sorted
            .binary_search_by(|s| s.id.cmp(&id.0))
            .ok()
            .map(|i| &self.sorted[i])
    }

    fn find(&self, id: &Id) -> Option<&Slot> {
        self.recent.get(id).or_else(|| self.find_sorted(id))
    }

    /// Where blob `id` is (with its base, for a delta).
    pub fn get(&self, id: &Id) -> Option<Location> {
        self.find(id).map(|s| Location {
            pack: self.packs[s.pack()].0,
            entry: self.full_entry(s),
        })
    }

    fn full_entry(&self, s: &Slot) -> PackEntry {
        let mut e = s.entry();
        if e.compression == Compression::ZstdDelta {
            if let Some(base) = self.bases.get(&e.id) {
                e.extra = BlobExtra::Base(*base, None);
            }
        }
        e
    }

    /// The bases of delta chunk `id` (`None` for a full chunk or an unknown one).
    pub fn bases_of(&self, id: &Id) -> Option<Bases> {
        self.bases.get(id).copied()
    }

    /// The blobs a restore of chunk `id` must decode first: its bases, their bases, … (none
    /// for a full chunk), nearest first.
    pub fn closure(&self, id: &Id) -> Vec<Id> {
        base_closure([*id], |x| self.bases_of(x))
    }

    /// Where every chunk that chunks `ids` need is: their closures' members (see
    /// [`Index::closure`]) with their locations, so that they can be read without the index;
    /// a base the index does not know is left out.
    pub fn closure_locations(&self, ids: impl IntoIterator<Item = Id>) -> HashMap<Id, Location> {
        base_closure(ids, |id| self.bases_of(id))
            .into_iter()
            .filter_map(|b| Some((b, self.get(&b)?)))
            .collect()
    }

    /// The bases for a new chunk with features `f`, most similar first: at most
    /// [`MAX_BASES`] stored data chunks sharing the most features with it (none when no
    /// stored chunk shares a feature), such that the new delta's closure stays within
    /// [`MAX_DELTA_READS`]. Among equally similar chunks, the newest version of a chunk (one
    /// no other candidate derives from) comes first; when that one's closure is full, the
    /// shallowest candidate (the chain starts again from near its full chunk).
    pub fn similar(&self, f: &Features) -> Vec<Id> {
        let mut votes: Vec<(Id, u32)> = Vec::new();
        let mut vote = |id: Id| match votes.iter_mut().find(|(c, _)| *c == id) {
            Some((_, n)) => *n += 1,
            None => votes.push((id, 1)),
        };
        for sf in f {
            let top = *sf;
            for id in self.recent_features.get(&top).into_iter().flatten() {
                vote(*id);
            }
            let from = self.features.partition_point(|k| (*k >> 32) < top as u64);
            for key in self.features[from..]
                .iter()
                .take_while(|k| *k >> 32 == top as u64)
            {
                if let Some(id) = self.data_chunk_with_prefix((*key as u32).to_be_bytes()) {
                    vote(id);
                }
            }
        }
        votes.retain(|(id, _)| self.find(id).is_some_and(Slot::is_data_chunk));
        let derived: HashSet<Id> = votes
            .iter()
            .filter_map(|(id, _)| self.bases_of(id))
            .flat_map(Bases::ids)
            .collect();
        // (votes, class, closure, id): class 0 = newest version, 1 = an older one; a
        // candidate whose closure is full is out.
        let mut ranked: Vec<(u32, u8, Vec<Id>, Id)> = votes
            .into_iter()
            .map(|(id, n)| (n, u8::from(derived.contains(&id)), self.closure(&id), id))
            .filter(|(_, _, closure, _)| closure.len() < MAX_DELTA_READS)
            .collect();
        // Stable: among equal ranks, the chunk met first (by feature order) comes first.
        ranked.sort_by_key(|(n, class, closure, _)| (std::cmp::Reverse(*n), *class, closure.len()));
        let mut out: Vec<Id> = Vec::new();
        let mut reads: HashSet<Id> = HashSet::new();
        for (_, _, closure, id) in ranked {
            // An older version of a base chosen already adds nothing to its prefix.
            if reads.contains(&id) {
                continue;
            }
            let mut with = reads.clone();
            with.insert(id);
            with.extend(closure);
            // A second base may add little to what a restore reads: else closures merge
            // night after night, and grow by both chains each night.
            if with.len() <= MAX_DELTA_READS && (out.is_empty() || with.len() <= reads.len() + 2) {
                out.push(id);
                reads = with;
            }
            if out.len() == MAX_BASES {
                break;
            }
        }
        out
    }

    /// The first data chunk in the sorted array whose id starts with `prefix`.
    fn data_chunk_with_prefix(&self, prefix: [u8; 4]) -> Option<Id> {
        let from = self.sorted.partition_point(|s| s.id[..4] < prefix[..]);
        self.sorted[from..]
            .iter()
            .take_while(|s| s.id[..4] == prefix[..])
            .find(|s| s.is_data_chunk())
            .map(|s| Id(s.id))
    }

    /// Whether blob `id` is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.find(id).is_some()
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Whether the index holds no blob.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> &[(Id, u64)] {
        &self.packs
    }

    /// Every indexed blob's entry (with its base, for a delta), in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = PackEntry> + '_ {
        self.sorted
            .iter()
            .chain(self.recent.values())
            .map(|s| self.full_entry(s))
    }
}

/// Two sorted lists as one (duplicates kept once).
fn merge_sorted(a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x <= y => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => unreachable!("loop condition"),
        };
        if out.last() != Some(&next) {
            out.push(next);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Compression;
    use crate::pack::BlobKind;

    fn entry(i: u64) -> PackEntry {
        PackEntry {
            id: Id::sha256(&i.to_le_bytes()),
            offset: 8 + i as u32,
            stored_len: 100 + i as u32,
            raw_len: 200 + i as u32,
            compression: [Compression::None, Compression::Zstd, Compression::Gzip]
                [(i % 3) as usize],
            kind: if i.is_multiple_of(7) {
                BlobKind::ChunkList
            } else {
                BlobKind::Data
            },
            extra: BlobExtra::None,
        }
    }

    #[test]
    fn every_blob_is_found_with_its_first_location_across_merges() {
        let mut index = Index::new();
        let n = 300_000u64;
        for p in 0..n / 100 {
            let entries: Vec<PackEntry> = (p * 100..(p + 1) * 100).map(entry).collect();
            index.add_pack(Id::sha256(&p.to_be_bytes()), 1000, &entries);
        }
        let mut builder = IndexBuilder::new();
        for p in 0..n / 100 {
            let entries: Vec<PackEntry> = (p * 100..(p + 1) * 100).map(entry).collect();
            builder.add_pack(Id::sha256(&p.to_be_bytes()), 1000, &entries);
        }
        builder.add_pack(Id::sha256(b"dup"), 1, &[entry(5)]);
        let bulk = builder.finish();
        assert_eq!(bulk.len() as u64, n);
        assert_eq!(bulk.get(&entry(12_345).id), index.get(&entry(12_345).id));
        // The same blobs again in another pack do not move.
        index.add_pack(Id::sha256(b"dup"), 1, &[entry(5), entry(250_000)]);
        assert_eq!(index.len() as u64, n);
        assert!(!index.sorted.is_empty(), "merged at least once");
        for i in (0..n).step_by(997).chain([5, 250_000, n - 1]) {
            let loc = index.get(&entry(i).id).unwrap();
            assert_eq!(loc.entry, entry(i));
            assert_eq!(loc.pack, Id::sha256(&(i / 100).to_be_bytes()));
        }
        assert!(!index.contains(&Id::sha256(b"absent")));
        assert_eq!(std::mem::size_of::<Slot>(), 46);
        for i in (0..n).step_by(1009) {
            assert_eq!(bulk.get(&entry(i).id), index.get(&entry(i).id));
        }
        assert_eq!(bulk.packs().len(), (n / 100 + 1) as usize);
    }

    #[test]
    fn lengths_up_to_the_blob_limit_survive_the_index_and_larger_ones_are_refused() {
        let mut e = entry(1);
        e.stored_len = MAX_BLOB_LEN;
        e.raw_len = MAX_BLOB_LEN - 1;
        let mut index = Index::new();
        index.add_pack(Id::sha256(b"p"), 1 << 26, &[e]);
        assert_eq!(index.get(&e.id).unwrap().entry, e);
        let mut bytes = Vec::new();
        e.stored_len = MAX_BLOB_LEN + 1;
        e.encode(&mut bytes);
        let err = PackEntry::decode(&bytes).unwrap_err();
        assert!(err.contains("exceeds"), "{err}");
    }

    #[test]
    fn a_pack_added_again_keeps_its_slot() {
        let mut index = Index::new();
        for p in [3u64, 1, 2, 1, 3] {
            index.add_pack(Id::sha256(&p.to_le_bytes()), p, &[entry(p)]);
        }
        assert_eq!(index.packs().len(), 3);
        assert_eq!(
            index.get(&entry(2).id).unwrap().pack,
            Id::sha256(&2u64.to_le_bytes())
        );
    }
}
