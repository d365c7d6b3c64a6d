//! Ingest: byte streams in, a snapshot out (`containerarchive ingest`, `Repository.ingest`).
//!
//! [`Repository::ingest`] takes a shared lock and returns an [`Ingest`]; each item's bytes go
//! through the pipeline in order, one batch of chunks processed while the next is cut:
//! FastCDC cut ([`crate::chunk`]) → chunk ids (and, with delta encoding, features) on all cores →
//! dedup against the index and this session → blob codec ([`crate::blob`]) → pack builder
//! ([`crate::pack`]) → when a pack is full: its id and parity in one pass ([`crate::parity`]),
//! pack and `.idx` stored, every 64 packs an index file. [`Ingest::commit`] flushes, writes
//! parity and index, and publishes the manifest in the crash-safe order of docs/FORMAT.md
//! ("Write order"): pending manifest, presence check, final manifest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use crate::blob::{encode_blob, encode_chunk_list, encode_delta_blob};
use crate::chunk::{Batch, Chunker};
use crate::compress::Compression;
use crate::config::CompressionConfig;
use crate::crypto::{random_bytes, RandomSource, NONCE_LEN};
use crate::delta::{self, Features, MIN_DELTA_CHUNK};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{encode_index_file, index_key, Index, IndexedPack, Location};
use crate::lock::{HeldLock, LockInfo, StaleCheck};
use crate::notice::{check_packs_present, read_notices};
use crate::pack::{
    base_closure, encode_idx, idx_key, pack_key, Bases, BlobExtra, BlobKind, PackBuilder,
};
use crate::parallel::{join, par_map};
use crate::parity::{ParityBuilder, GROUP_SIZE};
use crate::repo::Repository;
use crate::scan::read_with_bases;
use crate::snapshot::{
    encode_snapshot, format_time, pending_snapshot_key, snapshot_copy_key, snapshot_key, Item,
    ItemCommand, Manifest, Snapshot, IDS_PER_LIST_BLOB, MANIFEST_VERSION,
};
use crate::storage::{put_exact, Storage, StorageError};
use crate::validate::{validate_command, validate_item_name, validate_item_type, validate_tags};

/// Packs written before their index entries are flushed to a new index file.
const PACKS_PER_INGEST_INDEX_FILE: usize = 64;

impl<S: Storage> Repository<S> {
    /// Start an ingest under a shared lock. Nothing becomes visible until [`Ingest::commit`].
    /// The index is first brought up to date with what other processes changed, and chunks in
    /// packs a running prune is deleting are not reused (they are stored again).
    ///
    /// # Errors
    /// [`Error::Locked`]; [`Error::Unsupported`] when `config.json` needs a feature this build
    /// cannot write; [`Error::Corruption`] for an index file or notice that does not decode
    /// (a damaged index file: run repair); [`Error::Storage`].
    pub fn ingest(
        &self,
        lock_info: &LockInfo,
        mut rng: Box<dyn RandomSource + Send>,
        is_stale: StaleCheck<'_>,
    ) -> Result<Ingest<S>> {
        let lock = self.lock(lock_info, rng.as_mut(), is_stale)?;
        let prepared = self
            .refresh_index()
            .and_then(|_| self.check_index_sound())
            .and_then(|_| read_notices(self.storage(), self.keys()));
        let doomed = match prepared {
            Ok(d) => d,
            Err(e) => {
                let _ = self.unlock(&lock);
                return Err(e);
            }
        };
        let chunker = Chunker::new(self.config().chunker);
        Ok(Ingest {
            chunker,
            cut: None,
            spare: Vec::new(),
            writer: Writer {
                repo: self.clone(),
                rng,
                lock: Some(lock),
                avoid: doomed.packs,
                packs_used: HashSet::new(),
                pack: PackBuilder::new(),
                unindexed: Vec::new(),
                session: HashSet::new(),
                item: None,
                items: Vec::new(),
                stats: Stats::default(),
                parity: None,
                groups_written: HashSet::new(),
                host: None,
            },
        })
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    original_size: u64,
    stored_size: u64,
    chunk_count: u64,
    new_chunks: u64,
    reused_chunks: u64,
    delta_chunks: u64,
    delta_original_size: u64,
    delta_stored_size: u64,
}

/// A chunk this ingest stores: its bytes and id, the seal's nonce, and with delta encoding its
/// features and the bases found for it (ids and plaintexts, most similar first).
struct NewChunk<'a> {
    data: &'a [u8],
    id: Id,
    nonce: [u8; NONCE_LEN],
    features: Option<Features>,
    /// The stored chunks most similar to it ([`Index::similar`]), before the checks that
    /// each can serve as a base.
    similar: Vec<Id>,
    bases: Vec<(Id, Arc<Vec<u8>>)>,
    whole: bool,
}

/// A chunk encoded for its pack.
struct EncodedChunk {
    id: Id,
    stored: Vec<u8>,
    raw_len: usize,
    compression: Compression,
    extra: BlobExtra,
}

/// A delta this much smaller than the chunk is kept without also compressing the chunk whole
/// to compare (compression alone almost never shrinks a chunk a hundredfold; pgbench's padded
/// rows come close, at 88:1, and are compared).
const DELTA_SURELY_PAYS: usize = 100;

/// A delta against the most similar base this much smaller than the chunk is kept as it is;
/// a larger one is tried against both bases (the chunk's boundaries may have moved so that it
/// holds the ends of two stored chunks), and the smaller kept.
const ONE_BASE_SUFFICES: usize = 50;

/// A delta is kept only when it is at most this fraction (1/n) of the chunk compressed whole.
/// A weaker one (the new versions of rows scattered over a table, which resemble many stored
/// chunks a little) is stored whole instead: that costs a little more tonight, but gives
/// tomorrow's copy of those rows a base (a base is never a delta).
const WEAK_DELTA_DIVISOR: usize = 2;

/// The smallest delta of `data` against its bases: the most similar alone, or both.
fn best_delta(bases: &[(Id, Arc<Vec<u8>>)], data: &[u8], level: i32) -> Option<(Bases, Vec<u8>)> {
    let (first, first_plain) = bases.first()?;
    let one = delta::encode_delta(first_plain, data, level)?;
    let Some((second, second_plain)) = bases.get(1) else {
        return Some((Bases::one(*first), one));
    };
    if one.len() * ONE_BASE_SUFFICES <= data.len() {
        return Some((Bases::one(*first), one));
    }
    let prefix = [first_plain.as_slice(), second_plain.as_slice()].concat();
    match delta::encode_delta(&prefix, data, level) {
        Some(two) if two.len() < one.len() => Some((Bases::new(*first, Some(*second)), two)),
        _ => Some((Bases::one(*first), one)),
    }
}

/// Encode one new chunk: as a delta against its bases when it has some and the delta is
/// smaller than the chunk compressed whole; else compressed whole, with its features (it may
/// serve as a base later).
fn encode_new_chunk(
    keys: &crate::crypto::Keys,
    cfg: CompressionConfig,
    c: NewChunk<'_>,
) -> EncodedChunk {
    let as_delta = |bases: Bases, frame: Vec<u8>| EncodedChunk {
        id: c.id,
        stored: encode_delta_blob(keys, &c.id, frame, c.nonce),
        raw_len: c.data.len(),
        compression: Compression::ZstdDelta,
        extra: BlobExtra::Base(bases, c.features),
    };
    let delta = match best_delta(&c.bases, c.data, delta::delta_level(cfg.level)) {
        Some((bases, frame)) if frame.len() * DELTA_SURELY_PAYS <= c.data.len() => {
            return as_delta(bases, frame)
        }
        other => other,
    };
    let (stored, used) = encode_blob(keys, cfg, &c.id, c.data, c.nonce);
    if let Some((bases, frame)) = delta {
        if (frame.len() + keys.seal_overhead()) * WEAK_DELTA_DIVISOR <= stored.len() {
            return as_delta(bases, frame);
        }
    }
    EncodedChunk {
        id: c.id,
        stored,
        raw_len: c.data.len(),
        compression: used,
        extra: c.features.map_or(BlobExtra::None, BlobExtra::Features),
    }
}

struct ItemState {
    name: String,
    kind: String,
    size: u64,
    chunk_count: u64,
    ids: Vec<Id>,
    lists: Vec<Id>,
    command: Option<ItemCommand>,
}

/// Everything an ingest keeps apart from its chunker.
struct Writer<S: Storage> {
    repo: Repository<S>,
    rng: Box<dyn RandomSource + Send>,
    lock: Option<Arc<HeldLock>>,
    /// Packs a running prune announced it deletes: chunks there are stored again.
    avoid: HashSet<Id>,
    /// Every pack holding a blob this snapshot references (checked at commit).
    packs_used: HashSet<Id>,
    pack: PackBuilder,
    /// Packs stored whose entries are in no index file yet.
    unindexed: Vec<IndexedPack>,
    /// Blobs added by this ingest (the global index learns them once an index file is written).
    session: HashSet<Id>,
    item: Option<ItemState>,
    items: Vec<Item>,
    stats: Stats,
    /// The parity group new packs join (started or extended at the first pack).
    parity: Option<ParityBuilder>,
    /// Parity groups this ingest stored (checked at commit for members a prune deleted).
    groups_written: HashSet<String>,
    /// The host the snapshot records.
    host: Option<String>,
}

/// An ingest in progress: items are written one after another, then committed as one snapshot.
///
/// The stream is cut into batches of chunks; each batch is processed (hashed, deduplicated,
/// encoded, packed) while the chunker cuts the next one, on the worker pool.
pub struct Ingest<S: Storage> {
    chunker: Chunker,
    /// The batch cut last, processed while the next one is cut.
    cut: Option<Batch>,
    /// The buffer of the batch processed last, for the chunker to reuse.
    spare: Vec<u8>,
    writer: Writer<S>,
}

impl<S: Storage> Writer<S> {
    fn nonce(&mut self) -> [u8; NONCE_LEN] {
        random_bytes(self.rng.as_mut())
    }

    /// Whether blob `id` is stored already (by this ingest, or in a pack not being deleted)
    /// and readable: a delta only with every base (and theirs, …) indexed in such a pack. The packs it needs
    /// join those the commit checks.
    fn is_known(&mut self, id: &Id, index: &Index) -> bool {
        if self.session.contains(id) {
            return true;
        }
        let usable = |loc: &Location| !self.avoid.contains(&loc.pack);
        let Some(loc) = index.get(id).filter(usable) else {
            return false;
        };
        let mut packs = vec![loc.pack];
        for base in index.closure(id) {
            match index.get(&base).filter(usable) {
                Some(b) => packs.push(b.pack),
                // Its base is gone (a prune deleted it while the delta's writer failed): store
                // the chunk again rather than reference what cannot be read.
                None => return false,
            }
        }
        self.packs_used.extend(packs);
        true
    }

    /// Hash, deduplicate, compress (or delta-encode), encrypt and pack a batch of chunks of the
    /// current item.
    fn process(&mut self, chunks: &[&[u8]]) -> Result<()> {
        let repo = self.repo.clone();
        let keys = repo.keys();
        let delta = repo.delta();
        let mut todo = Vec::new();
        let ids: Vec<Id> = {
            let guard = repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            // One pass per chunk on the pool: its id and, with delta encoding, for a chunk the
            // index does not hold, its features and the stored chunks most similar to it (the
            // chunk is still in the core's cache from hashing).
            let analysed = par_map(chunks.to_vec(), |c| {
                let id = keys.chunk_id(c);
                if !delta || c.len() < MIN_DELTA_CHUNK || index.contains(&id) {
                    return (id, None, Vec::new());
                }
                let f = delta::features(keys, c);
                let similar = index.similar(&f);
                (id, Some(f), similar)
            });
            let mut ids = Vec::with_capacity(analysed.len());
            for (i, (id, features, similar)) in analysed.into_iter().enumerate() {
                ids.push(id);
                if self.is_known(&id, index) {
                    self.stats.reused_chunks += 1;
                } else {
                    self.session.insert(id);
                    self.stats.new_chunks += 1;
                    todo.push(NewChunk {
                        data: chunks[i],
                        id,
                        nonce: [0u8; NONCE_LEN],
                        features,
                        similar,
                        bases: Vec::new(),
                        // Stored already but not usable (its pack is being deleted, or it is a
                        // delta whose base is gone): stored again whole, so that this copy
                        // wins in every index (a full copy wins over a delta).
                        whole: index.contains(&id),
                    });
                }
            }
            ids
        };
        for t in &mut todo {
            t.nonce = self.nonce();
        }
        if delta {
            self.find_bases(&mut todo)?;
        }
        let cfg = repo.config().compression;
        let encoded = par_map(todo, |c| encode_new_chunk(keys, cfg, c));
        for e in encoded {
            if let BlobExtra::Base(..) = e.extra {
                self.stats.delta_chunks += 1;
                self.stats.delta_original_size += e.raw_len as u64;
                self.stats.delta_stored_size += e.stored.len() as u64;
            }
            self.add_blob(
                e.id,
                &e.stored,
                e.raw_len,
                e.compression,
                BlobKind::Data,
                e.extra,
            )?;
        }
        self.stats.chunk_count += ids.len() as u64;
        let item = self.item.as_mut().expect("an item is open");
        item.chunk_count += ids.len() as u64;
        item.ids.extend_from_slice(&ids);
        while self.item.as_ref().expect("open").ids.len() >= IDS_PER_LIST_BLOB {
            self.emit_list(IDS_PER_LIST_BLOB)?;
        }
        Ok(())
    }

    /// Delta encoding: of the stored chunks most similar to each new chunk (found with its id,
    /// [`Index::similar`]), those that can serve as its bases (each, and every chunk it needs,
    /// in a pack no prune is deleting), and their plaintexts, read for the whole batch at once.
    /// A base that cannot be read is no error: the chunk is stored full. A base used joins the
    /// packs the commit checks.
    fn find_bases(&mut self, todo: &mut [NewChunk<'_>]) -> Result<()> {
        let repo = self.repo.clone();
        let keys = repo.keys();
        // A chunk the index holds (stored again whole: its pack is being deleted, or its base
        // is gone) had no features computed; it needs them as a future base.
        let missing: Vec<usize> = (0..todo.len())
            .filter(|i| todo[*i].features.is_none() && todo[*i].data.len() >= MIN_DELTA_CHUNK)
            .collect();
        let computed = par_map(missing.iter().map(|i| todo[*i].data).collect(), |data| {
            delta::features(keys, data)
        });
        for (i, f) in missing.into_iter().zip(computed) {
            todo[i].features = Some(f);
        }
        // (chunk, base location) for every base of every chunk, in each chunk's base order.
        let mut wanted: Vec<(usize, Location)> = Vec::new();
        {
            let guard = repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            for (i, c) in todo.iter_mut().enumerate() {
                if c.whole {
                    continue;
                }
                // A base, and every chunk it needs, in a pack no prune is deleting.
                let usable = |b: &Id| index.get(b).filter(|l| !self.avoid.contains(&l.pack));
                for b in std::mem::take(&mut c.similar)
                    .into_iter()
                    .filter(|b| *b != c.id)
                {
                    if let Some(loc) = usable(&b) {
                        if index.closure(&b).iter().all(|x| usable(x).is_some()) {
                            wanted.push((i, loc));
                        }
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // Each base read once, even when several chunks of the batch share it, with the bases
        // it needs in turn.
        let mut seen = HashSet::new();
        let locs: Vec<Location> = wanted
            .iter()
            .map(|(_, l)| *l)
            .filter(|l| seen.insert(l.entry.id))
            .collect();
        // Where each chosen base and every chunk it needs is.
        let closure: HashMap<Id, Location> = {
            let guard = repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            let mut closure = index.closure_locations(locs.iter().map(|l| l.entry.id));
            closure.extend(locs.iter().map(|l| (l.entry.id, *l)));
            closure
        };
        // A base's id is recomputed only without encryption: there a pack damaged on disk
        // can decode to other bytes, which a repair from parity later puts right, and then a
        // delta made against the damaged bytes would decode wrong. Encrypted, every blob of
        // the closure opens under a label binding its id and decodes deterministically, so
        // the base is what every reader will decode; rechecking its id was 7 % of the CPU
        // time of a pg-series ingest.
        let read = read_with_bases(
            repo.storage(),
            keys,
            &locs,
            |id| closure.get(id).copied(),
            true,
            !keys.encrypted(),
        );
        for (i, loc) in wanted {
            if let Some(p) = read.plain.get(&loc.entry.id) {
                todo[i].bases.push((loc.entry.id, Arc::clone(p)));
                // The commit checks that every pack the delta needs is still there.
                self.packs_used.insert(loc.pack);
                let needs = base_closure([loc.entry.id], |x| closure.get(x)?.entry.bases());
                self.packs_used
                    .extend(needs.iter().filter_map(|b| Some(closure.get(b)?.pack)));
            }
        }
        Ok(())
    }

    /// Store the first `n` pending chunk ids of the current item as a chunk-list blob.
    fn emit_list(&mut self, n: usize) -> Result<()> {
        let item = self.item.as_mut().expect("an item is open");
        let raw = encode_chunk_list(item.ids.drain(..n));
        let repo = self.repo.clone();
        let id = repo.keys().chunk_id(&raw);
        self.item.as_mut().expect("open").lists.push(id);
        let known = {
            let guard = repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            self.is_known(&id, index)
        };
        if !known {
            self.session.insert(id);
            let nonce = self.nonce();
            let none = CompressionConfig {
                algorithm: Compression::None,
                level: 0,
            };
            let (stored, used) = encode_blob(repo.keys(), none, &id, &raw, nonce);
            self.add_blob(
                id,
                &stored,
                raw.len(),
                used,
                BlobKind::ChunkList,
                BlobExtra::None,
            )?;
        }
        Ok(())
    }

    fn add_blob(
        &mut self,
        id: Id,
        stored: &[u8],
        raw_len: usize,
        used: Compression,
        kind: BlobKind,
        extra: BlobExtra,
    ) -> Result<()> {
        self.pack.add(id, stored, raw_len, used, kind, extra);
        self.stats.stored_size += stored.len() as u64;
        if self.pack.len() as u64 >= self.repo.config().pack_size {
            self.flush_pack()?;
        }
        Ok(())
    }

    /// Store the current pack and its `.idx`.
    fn flush_pack(&mut self) -> Result<()> {
        if self.pack.is_empty() {
            return Ok(());
        }
        let nonce = self.nonce();
        let (data, entries) =
            std::mem::take(&mut self.pack).finish_unhashed(self.repo.keys(), nonce);
        if self.parity.is_none() {
            self.parity = Some(open_parity_group(&self.repo)?);
        }
        // The pack id (SHA-256) is computed while the parity takes the pack in.
        let id = self.parity.as_mut().expect("just set").add_hashing(&data);
        let size = data.len() as u64;
        let idx_nonce = self.nonce();
        let idx = encode_idx(self.repo.keys(), &id, size, &entries, idx_nonce);
        let storage = self.repo.storage();
        storage.put_exact_owned(&pack_key(&id), data)?;
        storage.put_exact_owned(&idx_key(&id), idx)?;
        self.packs_used.insert(id);
        let blobs: u64 = entries.iter().map(|e| e.stored_len as u64).sum();
        self.stats.stored_size += size - blobs;
        // A full group is stored once its last pack is (the storage orders them).
        if self.parity.as_ref().is_some_and(ParityBuilder::is_full) {
            self.store_parity()?;
        }
        self.unindexed.push(IndexedPack { id, size, entries });
        if self.unindexed.len() >= PACKS_PER_INGEST_INDEX_FILE {
            self.write_index()?;
        }
        Ok(())
    }

    /// Store the open parity group (also when not full: no pack stays unprotected).
    fn store_parity(&mut self) -> Result<()> {
        if let Some(builder) = self.parity.take() {
            let nonce = self.nonce();
            if let Some(g) = builder.store(self.repo.storage(), self.repo.keys(), nonce)? {
                self.groups_written.insert(g.key);
            }
        }
        Ok(())
    }

    /// Store an index file for the packs not yet indexed and teach the global index.
    fn write_index(&mut self) -> Result<()> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let nonce = self.nonce();
        let data = encode_index_file(self.repo.keys(), &self.unindexed, nonce);
        let key = index_key(&Id::sha256(&data));
        put_exact(self.repo.storage(), &key, &data)?;
        self.repo.index_add(&self.unindexed)?;
        self.repo.index_file_written(&key);
        self.unindexed.clear();
        // The global index knows these blobs now; only those of the open pack stay here, so
        // memory does not grow with the length of the stream.
        let open: HashSet<Id> = self.pack.ids().collect();
        self.session.retain(|id| open.contains(id));
        Ok(())
    }

    fn finish_item(&mut self) -> Result<()> {
        let pending = self.item.as_ref().map_or(0, |i| i.ids.len());
        if pending > 0 {
            self.emit_list(pending)?;
        }
        if let Some(i) = self.item.take() {
            self.stats.original_size += i.size;
            self.items.push(Item {
                name: i.name,
                kind: i.kind,
                size: i.size,
                chunk_count: i.chunk_count,
                chunk_lists: i.lists,
                command: i.command,
            });
        }
        Ok(())
    }

    fn release_lock(&mut self) -> Result<()> {
        match self.lock.take() {
            Some(l) => self.repo.unlock(&l),
            None => Ok(()),
        }
    }

    /// Make the manifest `data` (of snapshot `id`) visible, keeping every committed snapshot
    /// complete whatever other processes do (docs/FORMAT.md, "Commit protocol"):
    /// 1. write it under `snapshots/pending/` (a prune that looks from now on keeps its data);
    /// 2. check that every pack it needs is still listed and named by no deletion notice (a
    ///    prune that looked before step 1 wrote its notice before looking, so the check sees
    ///    the notice, or the packs gone); on failure remove the pending manifest: nothing is
    ///    committed;
    /// 3. write it under its final name, then remove the pending one. If the pending manifest
    ///    vanished meanwhile (an exclusive operation settled it), check again and withdraw on
    ///    failure.
    fn publish(&mut self, id: &Id, data: &[u8]) -> Result<()> {
        let storage = self.repo.storage();
        let keys = self.repo.keys();
        let pending = pending_snapshot_key(id);
        put_exact(storage, &pending, data)?;
        let final_key = snapshot_key(id);
        if let Err(e) = check_packs_present(storage, keys, &self.packs_used) {
            // While this ingest was paused, an exclusive operation may have committed its
            // pending manifest (after checking it): then the snapshot is saved.
            if storage.get(&final_key).as_deref() == Ok(data) {
                let _ = storage.delete(&pending);
                return Ok(());
            }
            let _ = storage.delete(&pending);
            return Err(e);
        }
        put_exact(storage, &final_key, data)?;
        let committed = match storage.delete(&pending) {
            Ok(()) => Ok(()),
            Err(StorageError::NotFound(_)) => check_packs_present(storage, keys, &self.packs_used)
                .inspect_err(|_| {
                    let _ = storage.delete(&final_key);
                }),
            // A pending manifest left behind only keeps data alive; repair removes it.
            Err(_) => Ok(()),
        };
        if committed.is_ok() && self.repo.copies() {
            // The copy follows the manifest, so that a copy without its manifest only ever
            // means a lost manifest. Failing to write it loses no backup: verify reports the
            // missing copy and repair writes it.
            let _ = put_exact(storage, &snapshot_copy_key(id), data);
        }
        committed
    }
}

/// The parity group the next new pack joins: the fullest group that still has room and whose
/// parity shard is intact, or a new one.
fn open_parity_group<S: Storage>(repo: &Repository<S>) -> Result<ParityBuilder> {
    let storage = repo.storage();
    let (mut groups, _) = crate::parity::load_groups_with(storage, repo.keys(), true)?;
    groups.retain(|g| g.desc.members.len() < GROUP_SIZE);
    groups.sort_by_key(|g| std::cmp::Reverse(g.desc.members.len()));
    for g in groups {
        match storage.get(&g.parity_key()) {
            Ok(parity) if Id::sha256(&parity) == g.desc.parity => {
                return Ok(ParityBuilder::extend(g, parity))
            }
            // Damaged, missing, or in an archive class: start or extend another group.
            Ok(_) | Err(StorageError::NotFound(_) | StorageError::Archived { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ParityBuilder::new())
}

/// Bytes buffered before chunking: enough for many chunks per parallel batch.
const CHUNK_BATCH_BYTES: usize = 4 << 20;

impl<S: Storage + Send + Sync> Ingest<S> {
    /// Begin a new item; the previous one must be finished.
    pub fn start_item(&mut self, name: &str, kind: &str) -> Result<()> {
        validate_item_name(name)?;
        validate_item_type(kind)?;
        let w = &mut self.writer;
        if let Some(open) = &w.item {
            return Err(Error::InvalidArgument(format!(
                "item {:?} is still open: finish it before starting {name:?}",
                open.name
            )));
        }
        if w.items.iter().any(|i| i.name == name) {
            return Err(Error::InvalidArgument(format!(
                "item name {name:?} appears twice in one snapshot"
            )));
        }
        // Items are restored into a directory as files at their names: one cannot be both a
        // file and the directory of another (`x` and `x/y`).
        let under = |dir: &str, path: &str| {
            path.len() > dir.len() + 1
                && path.starts_with(dir)
                && path.as_bytes()[dir.len()] == b'/'
        };
        if let Some(other) = w
            .items
            .iter()
            .find(|i| under(&i.name, name) || under(name, &i.name))
        {
            return Err(Error::InvalidArgument(format!(
                "item names {:?} and {name:?} clash: restored into a directory, one would have to \
                 be both a file and a directory",
                other.name
            )));
        }
        w.item = Some(ItemState {
            name: name.into(),
            kind: kind.into(),
            size: 0,
            chunk_count: 0,
            ids: Vec::new(),
            lists: Vec::new(),
            command: None,
        });
        Ok(())
    }

    /// Record `host` as the machine that makes this snapshot (its hostname, or a name the
    /// user chose, as restic's `--host`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty name, one over 255 bytes or one with control
    /// characters or surrounding blanks.
    pub fn set_host(&mut self, host: &str) -> Result<()> {
        crate::validate::validate_host(host)?;
        self.writer.host = Some(host.to_string());
        Ok(())
    }

    /// Record that the open item is the standard output of `argv`, which exited with
    /// `exit_status`. Only a zero status is accepted: a failed command must not become a
    /// snapshot (abort the ingest instead).
    pub fn set_item_command(&mut self, argv: Vec<String>, exit_status: i32) -> Result<()> {
        let item = self.writer.item.as_mut().ok_or_else(|| {
            Error::InvalidArgument("no item is open: call start_item first".into())
        })?;
        if exit_status != 0 {
            return Err(Error::InvalidArgument(format!(
                "item {:?}: its command exited with status {exit_status}; abort the ingest",
                item.name
            )));
        }
        validate_command(&argv)?;
        item.command = Some(ItemCommand { argv, exit_status });
        Ok(())
    }

    /// Add bytes to the current item.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.write_inner(data).map_err(overtaken)
    }

    fn write_inner(&mut self, mut data: &[u8]) -> Result<()> {
        let item = self.writer.item.as_mut().ok_or_else(|| {
            Error::InvalidArgument("no item is open: call start_item first".into())
        })?;
        item.size += data.len() as u64;
        let limit = CHUNK_BATCH_BYTES + self.writer.repo.config().chunker.max_size as usize;
        while !data.is_empty() {
            let room = limit.saturating_sub(self.chunker.pending()).max(1);
            let (now, later) = data.split_at(room.min(data.len()));
            self.chunker.push(now);
            data = later;
            if self.chunker.pending() >= limit {
                self.advance(false)?;
            }
        }
        Ok(())
    }

    /// Cut the pending bytes into a batch while the batch cut before is processed (FastCDC is
    /// one serial pass; with both on the worker pool, one worker cuts while the other starts
    /// on the batch, and takes its share of that batch's work once the cut is done).
    fn advance(&mut self, eof: bool) -> Result<()> {
        let spare = std::mem::take(&mut self.spare);
        let previous = self.cut.take();
        let (chunker, writer) = (&mut self.chunker, &mut self.writer);
        let (next, done) = join(
            || chunker.cut_off(eof, spare),
            || match &previous {
                Some(batch) => writer.process(&batch.chunks()),
                None => Ok(()),
            },
        );
        if let Some(batch) = previous {
            self.spare = batch.into_buffer();
        }
        self.cut = next;
        done
    }

    /// End the current item.
    pub fn finish_item(&mut self) -> Result<()> {
        self.finish_item_inner().map_err(overtaken)
    }

    fn finish_item_inner(&mut self) -> Result<()> {
        if self.writer.item.is_none() {
            return Err(Error::InvalidArgument("no item is open".into()));
        }
        // The first round cuts the tail while the batch before it is processed; the second
        // cuts nothing and processes the tail.
        self.advance(true)?;
        self.advance(true)?;
        self.writer.finish_item()
    }

    /// Renew this ingest's lock (also done by [`Repository::refresh_locks`] from a timer).
    pub fn refresh_lock(&mut self, now: &str) -> Result<()> {
        let w = &mut self.writer;
        if let Some(lock) = &w.lock {
            lock.refresh(w.repo.storage(), w.repo.keys(), now, w.rng.as_mut())?;
        }
        Ok(())
    }

    /// Whether another process removed this ingest's lock meanwhile (`unlock --force`, or a
    /// host that judged it stale). The commit check still decides whether it can commit.
    pub fn lock_lost(&self) -> bool {
        self.writer.lock.as_ref().is_some_and(|l| l.lost())
    }

    /// Bytes of content written so far (all items).
    pub fn bytes_written(&self) -> u64 {
        self.writer.stats.original_size + self.writer.item.as_ref().map_or(0, |i| i.size)
    }

    /// Make everything durable and write the snapshot manifest; only now does it appear.
    ///
    /// # Errors
    /// [`Error::ConcurrentModification`] when a prune removed data this snapshot needs or this
    /// ingest's lock (nothing is committed; run the backup again); [`Error::InvalidArgument`] for
    /// bad tags or time; [`Error::Storage`].
    pub fn commit(
        mut self,
        created_at: &DateTime<FixedOffset>,
        tags: BTreeMap<String, String>,
    ) -> Result<Snapshot> {
        self.commit_inner(created_at, tags).map_err(overtaken)
    }

    fn commit_inner(
        &mut self,
        created_at: &DateTime<FixedOffset>,
        tags: BTreeMap<String, String>,
    ) -> Result<Snapshot> {
        validate_tags(&tags)?;
        if self.writer.item.is_some() {
            self.finish_item_inner()?;
        }
        let w = &mut self.writer;
        if w.items.is_empty() {
            return Err(Error::InvalidArgument(
                "a snapshot needs at least one item".into(),
            ));
        }
        w.flush_pack()?;
        w.store_parity()?;
        w.write_index()?;
        // A group extended from one a concurrent prune replaced names the packs it deleted.
        let repo = w.repo.clone();
        repo.regroup_broken_groups(Some(&w.groups_written), w.rng.as_mut())?;
        let s = w.stats;
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            created_at: format_time(created_at),
            tags,
            host: w.host.clone(),
            original_size: s.original_size,
            stored_size: s.stored_size,
            chunk_count: s.chunk_count,
            new_chunks: s.new_chunks,
            reused_chunks: s.reused_chunks,
            delta_chunks: s.delta_chunks,
            delta_original_size: s.delta_original_size,
            delta_stored_size: s.delta_stored_size,
            items: std::mem::take(&mut w.items),
        };
        let nonce = w.nonce();
        let (id, data) = encode_snapshot(w.repo.keys(), &manifest, nonce);
        if let Err(e) = w.publish(&id, &data) {
            // What this handle believed about the repository is out of date: read it afresh
            // before the next ingest or restore.
            w.repo.forget_index();
            return Err(e);
        }
        // Committed: a lock that could not be removed now goes stale by itself; failing here
        // would make the caller back the same data up again.
        let _ = w.release_lock();
        Ok(Snapshot {
            id,
            time: *created_at,
            manifest,
        })
    }

    /// Give up: no snapshot is written; stored packs stay until garbage collection.
    pub fn abort(mut self) -> Result<()> {
        self.writer.release_lock()
    }
}

/// An ingest's own file vanished while it wrote (a prune that judged its lock stale removed
/// its temporary files, or the pack it had just stored): say so as a concurrent change, not as
/// damage — nothing was committed, and running the backup again is right.
fn overtaken(e: Error) -> Error {
    match e {
        Error::Storage(StorageError::NotFound(key)) => Error::ConcurrentModification {
            object: key,
            reason: "a file this backup was writing was removed by another process (a prune that judged its lock stale); nothing was committed (run the backup again)".into(),
        },
        e => e,
    }
}

impl<S: Storage> Drop for Writer<S> {
    fn drop(&mut self) {
        // Best effort: a lock we cannot remove now is left for stale-lock detection.
        let _ = self.release_lock();
    }
}
