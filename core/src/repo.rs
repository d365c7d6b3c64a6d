//! Repository operations: init, open, ingest, restore, list and get snapshots.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};

use chrono::{DateTime, FixedOffset};

use crate::blob::{decode_chunk_list, encode_blob, encode_chunk_list, read_blob};
use crate::chunk::Chunker;
use crate::compress::Compression;
use crate::config::{
    ChunkerConfig, CompressionConfig, Config, Features, ParityConfig, CONFIG_KEY, FORMAT_NAME,
    FORMAT_VERSION, KNOWN_FEATURES, OLDEST_FORMAT_VERSION,
};
use crate::crypto::{random_bytes, KdfParams, Keys, RandomSource, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{
    decode_index_file, encode_index_file, index_key, Index, IndexBuilder, IndexedPack, Location,
};
use crate::keyfile::{check_new_passphrase, unlock_master, write_key_file, NewKey};
use crate::lock::{self, HeldLock, LockInfo, StaleCheck, UnlockReport};
use crate::notice::{check_packs_present, read_notices};
use crate::pack::{encode_idx, idx_key, pack_key, BlobKind, PackBuilder};
use crate::parallel::par_map;
use crate::parity::{ParityBuilder, GROUP_SIZE};
use crate::snapshot::{
    decode_snapshot, encode_snapshot, format_time, pending_snapshot_key, snapshot_id_of_key,
    snapshot_key, Item, ItemCommand, Manifest, Snapshot, IDS_PER_LIST_BLOB, MANIFEST_VERSION,
    SNAPSHOT_PREFIX,
};
use crate::storage::{put_exact, Storage, StorageError};
use crate::validate::{validate_command, validate_item_name, validate_item_type, validate_tags};

/// Packs written before their index entries are flushed to a new index file.
const PACKS_PER_INDEX_FILE: usize = 64;
/// Bytes of chunks restored per batch (decoded in parallel).
const RESTORE_BATCH_BYTES: u64 = 8 << 20;
/// Gap between two blobs of one pack below which restore reads them in one request.
const COALESCE_GAP: u64 = 256 << 10;
/// Times a read reloads the index after finding a pack gone (a prune moved its blobs) before
/// reporting the pack missing.
const RELOCATE_ATTEMPTS: usize = 3;

/// Settings chosen at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Compression of new chunks.
    pub compression: Compression,
    /// Its level (`None`: the algorithm's default).
    pub compression_level: Option<i32>,
    /// Argon2id costs of the first key file.
    pub kdf: KdfParams,
    /// Chunking.
    pub chunker: ChunkerConfig,
    /// Target pack size in bytes.
    pub pack_size: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            compression: Compression::Zstd,
            compression_level: None,
            kdf: KdfParams::default(),
            chunker: ChunkerConfig::default(),
            pack_size: 8 << 20,
        }
    }
}

/// Which snapshots to list: all tags must match; `after ≤ created_at ≤ before`; the host, if
/// given, must be the one recorded.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Tags that must all be present with these values.
    pub tags: BTreeMap<String, String>,
    /// Earliest creation time (inclusive).
    pub after: Option<DateTime<FixedOffset>>,
    /// Latest creation time (inclusive).
    pub before: Option<DateTime<FixedOffset>>,
    /// The host that made the snapshot (snapshots of unknown host never match).
    pub host: Option<String>,
}

impl SnapshotFilter {
    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.tags
            .iter()
            .all(|(k, v)| s.manifest.tags.get(k) == Some(v))
            && self.after.is_none_or(|a| s.time >= a)
            && self.before.is_none_or(|b| s.time <= b)
            && self
                .host
                .as_ref()
                .is_none_or(|h| s.manifest.host.as_ref() == Some(h))
    }
}

struct Inner<S> {
    storage: S,
    config: Config,
    keys: Keys,
    index: RwLock<Option<Index>>,
    /// The index files the loaded index was built from (to notice other processes' changes).
    index_files: Mutex<BTreeSet<String>>,
    /// Locks taken through this handle and not yet released, for [`Repository::refresh_locks`].
    held: Mutex<Vec<Weak<HeldLock>>>,
    /// Whether `config.json` is known to carry every feature this build writes.
    writable: AtomicBool,
    /// Asked between steps of long operations whether to stop (see [`Repository::set_interrupt`]).
    interrupt: RwLock<Option<InterruptCheck>>,
    /// The master key and the key file it was unlocked with (encrypted repositories).
    master: Option<[u8; 32]>,
    current_key: std::sync::Mutex<Option<String>>,
}

/// A caller's "should the operation stop now?" (see [`Repository::set_interrupt`]).
pub type InterruptCheck = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// An open repository. Cloning is cheap and shares the loaded index.
pub struct Repository<S: Storage> {
    inner: Arc<Inner<S>>,
}

impl<S: Storage> Clone for Repository<S> {
    fn clone(&self) -> Self {
        Repository {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Storage> Repository<S> {
    /// Create a repository in empty storage. With a passphrase it is encrypted. Errors:
    /// [`Error::RepositoryExists`]; [`Error::InvalidArgument`] for an empty passphrase (see
    /// [`crate::keyfile::check_new_passphrase`]).
    pub fn init(
        storage: S,
        passphrase: Option<&[u8]>,
        options: &InitOptions,
        created_at: &str,
        key_comment: &str,
        rng: &mut dyn RandomSource,
    ) -> Result<Self> {
        if let Some(p) = passphrase {
            check_new_passphrase(p)?;
        }
        match storage.get(CONFIG_KEY) {
            Ok(_) => {
                return Err(Error::RepositoryExists {
                    location: storage.location(),
                })
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The location must be empty but for what an unfinished init of ours left: key files
        // (whose repository was never created; they open nothing and are left alone).
        let mut found = Vec::new();
        for (key, _) in storage.list("")? {
            if key == CONFIG_KEY {
                // Another init finished since the look above.
                return Err(Error::RepositoryExists {
                    location: storage.location(),
                });
            }
            let leftover = crate::layout::is(crate::layout::Kind::Key, &key)
                && match storage.get(&key) {
                    Ok(data) => crate::crypto::KeyFile::parse(&data).is_ok(),
                    Err(StorageError::NotFound(_)) => true,
                    Err(e) => return Err(e.into()),
                };
            if !leftover {
                found.push(key);
            }
        }
        if !found.is_empty() {
            found.sort();
            return Err(Error::NotEmpty {
                location: storage.location(),
                found,
            });
        }
        let repo_id = Id(random_bytes(rng));
        let algorithm = options.compression;
        let config = Config {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: repo_id.to_hex(),
            chunker: options.chunker,
            compression: CompressionConfig {
                algorithm,
                level: options
                    .compression_level
                    .unwrap_or_else(|| algorithm.default_level()),
            },
            encryption: if passphrase.is_some() {
                "aes-256-gcm"
            } else {
                "none"
            }
            .into(),
            chunk_id: if passphrase.is_some() {
                "hmac-sha256"
            } else {
                "sha256"
            }
            .into(),
            pack_size: options.pack_size,
            parity: ParityConfig::default(),
            features: Features {
                read: Vec::new(),
                write: KNOWN_FEATURES.iter().map(|f| f.to_string()).collect(),
            },
        };
        config.validate().map_err(Error::InvalidArgument)?;
        let mut unlocked = None;
        let keys = match passphrase {
            Some(pass) => {
                let master: [u8; 32] = random_bytes(rng);
                let new_key = NewKey {
                    passphrase: pass,
                    kdf: options.kdf,
                    created_at,
                    comment: key_comment,
                };
                let key = write_key_file(&storage, &master, &repo_id, &new_key, rng)?;
                unlocked = Some((master, key));
                Keys::from_master(&master, &repo_id)
            }
            None => Keys::plain(),
        };
        // config.json last: its presence is what makes the repository exist.
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        storage.put(CONFIG_KEY, &json).map_err(|e| match e {
            StorageError::AlreadyExists(_) => {
                // Another init won the race (the put is create-only): withdraw our key file,
                // which wraps a master key of a repository that does not exist.
                if let Some((_, key)) = &unlocked {
                    let _ = storage.delete(key);
                }
                Error::RepositoryExists {
                    location: storage.location(),
                }
            }
            e => e.into(),
        })?;
        Ok(Self::from_parts(
            storage,
            config,
            keys,
            Some(Index::new()),
            unlocked,
        ))
    }

    fn from_parts(
        storage: S,
        config: Config,
        keys: Keys,
        index: Option<Index>,
        unlocked: Option<([u8; 32], String)>,
    ) -> Self {
        let (master, current) = match unlocked {
            Some((m, k)) => (Some(m), Some(k)),
            None => (None, None),
        };
        Repository {
            inner: Arc::new(Inner {
                storage,
                config,
                keys,
                index: RwLock::new(index),
                index_files: Mutex::new(BTreeSet::new()),
                held: Mutex::new(Vec::new()),
                writable: AtomicBool::new(false),
                interrupt: RwLock::new(None),
                master,
                current_key: std::sync::Mutex::new(current),
            }),
        }
    }

    /// Install `check`, asked between steps of long operations (repair, reindex, the planning
    /// of prune) whether to stop: an error it returns (`Error::Cancelled`, say, when a signal
    /// arrived) ends the operation there, as a crash at that point would, safely.
    pub fn set_interrupt(&self, check: Option<InterruptCheck>) {
        *self
            .inner
            .interrupt
            .write()
            .unwrap_or_else(|e| e.into_inner()) = check;
    }

    /// Ask the installed interrupt check (if any) whether to stop.
    pub(crate) fn check_interrupt(&self) -> Result<()> {
        let check = self
            .inner
            .interrupt
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match check {
            Some(c) => c(),
            None => Ok(()),
        }
    }

    /// The master key, or an error for an unencrypted repository.
    pub(crate) fn master_key(&self) -> Result<[u8; 32]> {
        self.inner.master.ok_or_else(|| {
            Error::InvalidArgument("the repository is not encrypted: it has no keys".into())
        })
    }

    /// The key file this repository was opened (or last re-keyed) with.
    pub fn current_key(&self) -> Option<String> {
        self.inner
            .current_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_current_key(&self, key: Option<String>) {
        *self
            .inner
            .current_key
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// Open an existing repository.
    pub fn open(storage: S, passphrase: Option<&[u8]>) -> Result<Self> {
        let raw = match storage.get(CONFIG_KEY) {
            Ok(raw) => raw,
            Err(StorageError::NotFound(_)) => {
                return Err(Error::RepositoryNotFound {
                    location: storage.location(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let config: Config = serde_json::from_slice(&raw)
            .map_err(|e| Error::corruption(CONFIG_KEY, format!("not a valid config: {e}")))?;
        config.validate().map_err(|reason| {
            if config.format == FORMAT_NAME
                && !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&config.version)
                || reason.contains("feature")
            {
                Error::Unsupported(reason)
            } else {
                Error::corruption(CONFIG_KEY, reason)
            }
        })?;
        let repo_id = Id::from_hex(&config.id)
            .ok_or_else(|| Error::corruption(CONFIG_KEY, "repository id is not 64 hex digits"))?;
        let mut unlocked = None;
        let keys = if config.encrypted() {
            let pass = passphrase.ok_or_else(|| {
                Error::WrongPassphrase(format!(
                    "the repository at {} is encrypted: a passphrase is needed",
                    storage.location()
                ))
            })?;
            let (master, key) = unlock_master(&storage, &repo_id, pass)?;
            unlocked = Some((master, key));
            Keys::from_master(&master, &repo_id)
        } else {
            Keys::plain()
        };
        Ok(Self::from_parts(storage, config, keys, None, unlocked))
    }

    /// The storage backend.
    pub fn storage(&self) -> &S {
        &self.inner.storage
    }

    /// The repository settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The working keys.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The global index, loaded from `index/` on first use.
    pub fn index(&self) -> Result<RwLockReadGuard<'_, Option<Index>>> {
        {
            let guard = self.inner.index.read().unwrap_or_else(|e| e.into_inner());
            if guard.is_some() {
                return Ok(guard);
            }
        }
        let loaded = self.load_index()?;
        {
            let mut w = self.inner.index.write().unwrap_or_else(|e| e.into_inner());
            if w.is_none() {
                *w = Some(loaded);
            }
        }
        Ok(self.inner.index.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn load_index(&self) -> Result<Index> {
        // A file listed but gone when read was replaced by a prune (which writes the new index
        // before deleting the old): list again and start over.
        for _ in 0..RELOCATE_ATTEMPTS {
            match self.load_index_once() {
                Err(Error::Storage(StorageError::NotFound(_))) => continue,
                other => return other,
            }
        }
        self.load_index_once()
    }

    /// Read every index file, leaving out packs that are not in storage (one listing): an
    /// index file may name a pack deleted since (an ingest that a prune overtook), and a blob
    /// also stored elsewhere must then be found there, never in the missing pack.
    fn load_index_once(&self) -> Result<Index> {
        let storage = &self.inner.storage;
        let mut index = IndexBuilder::new();
        let keys: BTreeSet<String> = crate::index::list_index_files(storage)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let present = self.listed_packs()?;
        for key in &keys {
            let data = storage.get(key)?;
            for p in decode_index_file(&self.inner.keys, key, &data)? {
                if present.contains(&pack_key(&p.id)) {
                    index.add_pack(p.id, p.size, &p.entries);
                }
            }
        }
        *self
            .inner
            .index_files
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(index.finish())
    }

    /// Keys of every pack in storage (one listing).
    fn listed_packs(&self) -> Result<HashSet<String>> {
        Ok(self
            .inner
            .storage
            .list("packs/data/")?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| crate::layout::is(crate::layout::Kind::Pack, k))
            .collect())
    }

    /// Catch up with what other processes did to `index/` since the index was loaded: new
    /// files are added; if any file was removed (a prune or reindex replaced the index), the
    /// whole index is read again. Costs one listing when nothing changed.
    pub fn refresh_index(&self) -> Result<()> {
        if self
            .inner
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            return Ok(()); // loaded fresh on first use
        }
        let listed: BTreeSet<String> = crate::index::list_index_files(&self.inner.storage)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let known = self
            .inner
            .index_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if listed == known {
            return Ok(());
        }
        if !known.is_subset(&listed) {
            self.forget_index();
            drop(self.index()?);
            return Ok(());
        }
        let present = self.listed_packs()?;
        for key in listed.difference(&known) {
            let data = match self.inner.storage.get(key) {
                Ok(d) => d,
                Err(StorageError::NotFound(_)) => {
                    self.forget_index();
                    drop(self.index()?);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let mut packs = decode_index_file(&self.inner.keys, key, &data)?;
            packs.retain(|p| present.contains(&pack_key(&p.id)));
            self.index_add(&packs)?;
            self.inner
                .index_files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
        }
        Ok(())
    }

    fn index_add(&self, packs: &[IndexedPack]) -> Result<()> {
        drop(self.index()?);
        let mut w = self.inner.index.write().unwrap_or_else(|e| e.into_inner());
        let index = w.get_or_insert_with(Index::new);
        for p in packs {
            index.add_pack(p.id, p.size, &p.entries);
        }
        Ok(())
    }

    /// Drop the loaded index; it is read again on next use (after maintenance changed it).
    pub(crate) fn forget_index(&self) {
        *self.inner.index.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Record that this process wrote index file `key` (its packs are added with
    /// [`Repository::index_add`]), so that a refresh does not read it again.
    fn index_file_written(&self, key: &str) {
        self.inner
            .index_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
    }

    /// Where blob `id` is stored.
    pub fn locate(&self, id: &Id) -> Result<Option<Location>> {
        Ok(self.index()?.as_ref().and_then(|i| i.get(id)))
    }

    /// Ids of every snapshot, from file names alone.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .inner
            .storage
            .list(SNAPSHOT_PREFIX)?
            .into_iter()
            .filter_map(|(k, _)| snapshot_id_of_key(&k))
            .collect())
    }

    /// Read one snapshot manifest.
    pub fn load_snapshot(&self, id: Id) -> Result<Snapshot> {
        let data = self
            .inner
            .storage
            .get(&snapshot_key(&id))
            .map_err(|e| match e {
                StorageError::NotFound(_) => Error::SnapshotNotFound(id.to_hex()),
                e => e.into(),
            })?;
        decode_snapshot(&self.inner.keys, id, &data)
    }

    /// Snapshots passing `filter`, oldest first. Reads manifests only, never chunk lists.
    pub fn list_snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for id in self.snapshot_ids()? {
            let s = self.load_snapshot(id)?;
            if filter.matches(&s) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A snapshot by full id, unique id prefix, or `latest`.
    pub fn get_snapshot(&self, id_or_prefix: &str) -> Result<Snapshot> {
        let wanted = id_or_prefix.trim().to_ascii_lowercase();
        if wanted == "latest" {
            return self
                .list_snapshots(&SnapshotFilter::default())?
                .pop()
                .ok_or_else(|| {
                    Error::SnapshotNotFound("latest (the repository has no snapshots)".into())
                });
        }
        let id = resolve_snapshot_prefix(self.snapshot_ids()?, id_or_prefix)?;
        self.load_snapshot(id)
    }

    /// Make sure this build may write here, upgrading `config.json` on the first write to a
    /// repository of an older format (docs/FORMAT.md, "Format versions and features").
    pub fn prepare_write(&self) -> Result<()> {
        if self.inner.writable.load(Ordering::SeqCst) {
            return Ok(());
        }
        let stored: Config = match self.inner.storage.get(CONFIG_KEY) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map_err(|e| Error::corruption(CONFIG_KEY, format!("not a valid config: {e}")))?,
            Err(e) => return Err(e.into()),
        };
        stored.validate().map_err(Error::Unsupported)?;
        stored.check_writable().map_err(Error::Unsupported)?;
        if stored.needs_upgrade() {
            let json = serde_json::to_vec_pretty(&stored.upgraded()).expect("config serializes");
            self.inner.storage.replace(CONFIG_KEY, &json)?;
        }
        self.inner.writable.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Take a lock for an operation (after [`Repository::prepare_write`]); it is renewed by
    /// [`Repository::refresh_locks`] until released with [`Repository::unlock`].
    pub fn lock(
        &self,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<Arc<HeldLock>> {
        self.prepare_write()?;
        let key = lock::acquire(&self.inner.storage, &self.inner.keys, info, rng, is_stale)?;
        let held = Arc::new(HeldLock::new(key, info.clone()));
        let mut all = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&held));
        Ok(held)
    }

    /// Release a lock taken with [`Repository::lock`] (retrying the removal).
    pub fn unlock(&self, held: &HeldLock) -> Result<()> {
        held.release(&self.inner.storage)
    }

    /// Renew every lock held through this handle (call from a timer, every few minutes, so
    /// that a long or silent operation never looks stale to other hosts). Returns how many.
    pub fn refresh_locks(&self, now: &str, rng: &mut dyn RandomSource) -> Result<usize> {
        let live: Vec<Arc<HeldLock>> = {
            let mut all = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let mut renewed = 0;
        let mut first_error = None;
        for held in live.iter().filter(|h| h.key().is_some()) {
            match held.refresh(&self.inner.storage, &self.inner.keys, now, rng) {
                Ok(()) => renewed += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(renewed),
        }
    }

    /// Remove stale locks (with `force`, every lock); says what it removed and what it left
    /// and why. Ages are measured on the storage's clock against a short-lived lock of ours
    /// (`info`, shared), which is removed again.
    pub fn remove_locks(
        &self,
        force: bool,
        is_stale: StaleCheck<'_>,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
    ) -> Result<UnlockReport> {
        self.prepare_write()?;
        let mut probe = info.clone();
        probe.exclusive = false;
        let own = lock::write_lock(&self.inner.storage, &self.inner.keys, &probe, rng)?;
        let report =
            lock::remove_locks(&self.inner.storage, &self.inner.keys, force, is_stale, &own);
        let released = lock::release(&self.inner.storage, &own);
        let report = report?;
        released?;
        Ok(report)
    }

    /// Start an ingest under a shared lock. Nothing becomes visible until [`Ingest::commit`].
    /// The index is first brought up to date with what other processes changed, and chunks in
    /// packs a running prune is deleting are not reused (they are stored again).
    pub fn ingest(
        &self,
        lock_info: &LockInfo,
        mut rng: Box<dyn RandomSource + Send>,
        is_stale: StaleCheck<'_>,
    ) -> Result<Ingest<S>> {
        let lock = self.lock(lock_info, rng.as_mut(), is_stale)?;
        let prepared = self
            .refresh_index()
            .and_then(|_| read_notices(&self.inner.storage, &self.inner.keys));
        let doomed = match prepared {
            Ok(d) => d,
            Err(e) => {
                let _ = self.unlock(&lock);
                return Err(e);
            }
        };
        let chunker = Chunker::new(self.inner.config.chunker);
        Ok(Ingest {
            chunker,
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

    /// Read blobs (already located) from storage, reading neighbours in one request.
    /// Read the stored bytes of `locs` with one ranged read per run of nearby blobs of a pack:
    /// the buffers read, and for each location its buffer and range (no per-blob copy).
    #[allow(clippy::type_complexity)]
    fn fetch(&self, locs: &[Location]) -> Result<(Vec<Vec<u8>>, Vec<(usize, Range<usize>)>)> {
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
        let results = self.inner.storage.get_ranges(&requests);
        let mut buffers = Vec::with_capacity(groups.len());
        let mut ranges = Vec::with_capacity(locs.len());
        for (((members, start), (_, _, len)), data) in
            groups.into_iter().zip(&requests).zip(results)
        {
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

    /// Locate, fetch and decode blobs, in parallel where enabled. A pack found gone makes the
    /// index be read again (a prune in another process moved its blobs to new packs and wrote
    /// the new index before deleting the old packs) and the read retried.
    fn read_blobs(&self, ids: &[Id], what: &dyn Fn(&Id) -> String) -> Result<Vec<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            match self.read_blobs_once(ids)? {
                Ok(blobs) => return Ok(blobs),
                Err(_) if attempt < RELOCATE_ATTEMPTS => {
                    attempt += 1;
                    self.forget_index();
                }
                Err(Missing::Chunk(id)) => return Err(self.not_found_error(&id, &what(&id))),
                Err(Missing::Pack(pack, id)) => {
                    return Err(Error::corruption(
                        format!("pack {pack}"),
                        format!(
                        "missing (it holds chunk {id} of {}), also after reading the index again",
                        what(&id)
                    ),
                    ))
                }
            }
        }
    }

    /// One attempt of [`Repository::read_blobs`]: the blobs, or what was missing (a chunk the
    /// index does not know, a pack that is gone) so that the caller may reload and retry.
    fn read_blobs_once(&self, ids: &[Id]) -> Result<std::result::Result<Vec<Vec<u8>>, Missing>> {
        let locs = {
            let guard = self.index()?;
            let index = guard.as_ref().expect("index loaded");
            let mut locs = Vec::with_capacity(ids.len());
            for id in ids {
                match index.get(id) {
                    Some(loc) => locs.push(loc),
                    None => return Ok(Err(Missing::Chunk(*id))),
                }
            }
            locs
        };
        let (buffers, ranges) = match self.fetch(&locs) {
            Ok(fetched) => fetched,
            Err(Error::Storage(StorageError::NotFound(key))) => {
                let loc = locs
                    .iter()
                    .find(|l| key == pack_key(&l.pack))
                    .unwrap_or(&locs[0]);
                return Ok(Err(Missing::Pack(loc.pack, loc.entry.id)));
            }
            Err(e) => return Err(e),
        };
        let keys = &self.inner.keys;
        let jobs: Vec<(Location, &[u8])> = locs
            .into_iter()
            .zip(ranges)
            .map(|(loc, (b, r))| (loc, &buffers[b][r]))
            .collect();
        par_map(jobs, |(loc, stored)| read_blob(keys, &loc, stored))
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .map(Ok)
    }

    /// Why blob `id` cannot be read: the pack an index file names for it is missing, or no
    /// index file names it at all. Reads the index files again (an error path only).
    fn not_found_error(&self, id: &Id, what: &str) -> Error {
        let storage = &self.inner.storage;
        let listed = crate::index::list_index_files(storage).unwrap_or_default();
        for (key, _) in listed {
            let Ok(data) = storage.get(&key) else {
                continue;
            };
            let Ok(packs) = decode_index_file(&self.inner.keys, &key, &data) else {
                continue;
            };
            if let Some(p) = packs.iter().find(|p| p.entries.iter().any(|e| e.id == *id)) {
                return Error::corruption(
                    format!("pack {}", p.id),
                    format!("missing (it holds chunk {id} of {what})"),
                );
            }
        }
        Error::corruption(what, format!("chunk {id} is not in the index"))
    }

    /// A reader over one item of a snapshot (the index is first brought up to date).
    pub fn item_reader(&self, snapshot: &Snapshot, item: &str) -> Result<ItemReader<S>> {
        self.refresh_index()?;
        Ok(ItemReader {
            repo: self.clone(),
            snapshot: snapshot.id,
            item: snapshot.item(item)?.clone(),
            list_pos: 0,
            ids: Vec::new(),
            id_pos: 0,
            produced: 0,
            chunks: 0,
        })
    }
}

/// What a read found missing.
enum Missing {
    /// A chunk no loaded index file names.
    Chunk(Id),
    /// A pack that is gone (with a chunk it held).
    Pack(Id, Id),
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    original_size: u64,
    stored_size: u64,
    chunk_count: u64,
    new_chunks: u64,
    reused_chunks: u64,
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
pub struct Ingest<S: Storage> {
    chunker: Chunker,
    writer: Writer<S>,
}

impl<S: Storage> Writer<S> {
    fn nonce(&mut self) -> [u8; NONCE_LEN] {
        random_bytes(self.rng.as_mut())
    }

    /// Whether blob `id` is stored already (by this ingest, or in a pack not being deleted);
    /// the pack it is in joins those the commit checks.
    fn is_known(&mut self, id: &Id, index: &Index) -> bool {
        if self.session.contains(id) {
            return true;
        }
        match index.get(id) {
            Some(loc) if !self.avoid.contains(&loc.pack) => {
                self.packs_used.insert(loc.pack);
                true
            }
            _ => false,
        }
    }

    /// Hash, deduplicate, compress, encrypt and pack a batch of chunks of the current item.
    fn process(&mut self, chunks: &[&[u8]]) -> Result<()> {
        let repo = self.repo.clone();
        let keys = repo.keys();
        let cfg = repo.config().compression;
        let ids = par_map(chunks.to_vec(), |c| keys.chunk_id(c));
        let mut todo = Vec::new();
        {
            let guard = repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            for (i, id) in ids.iter().enumerate() {
                if self.is_known(id, index) {
                    self.stats.reused_chunks += 1;
                } else {
                    self.session.insert(*id);
                    self.stats.new_chunks += 1;
                    todo.push((chunks[i], *id, [0u8; NONCE_LEN]));
                }
            }
        }
        for t in &mut todo {
            t.2 = self.nonce();
        }
        let encoded = par_map(todo, |(data, id, nonce)| {
            let (stored, used) = encode_blob(keys, cfg, &id, data, nonce);
            (id, stored, used, data.len())
        });
        for (id, stored, used, raw_len) in encoded {
            self.add_blob(id, &stored, raw_len, used, BlobKind::Data)?;
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
            self.add_blob(id, &stored, raw.len(), used, BlobKind::ChunkList)?;
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
    ) -> Result<()> {
        self.pack.add(id, stored, raw_len, used, kind);
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
        if self.unindexed.len() >= PACKS_PER_INDEX_FILE {
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
        match storage.delete(&pending) {
            Ok(()) => Ok(()),
            Err(StorageError::NotFound(_)) => check_packs_present(storage, keys, &self.packs_used)
                .inspect_err(|_| {
                    let _ = storage.delete(&final_key);
                }),
            // A pending manifest left behind only keeps data alive; repair removes it.
            Err(_) => Ok(()),
        }
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

impl<S: Storage> Ingest<S> {
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
    /// user chose, as restic's `--host`). Errors: [`Error::InvalidArgument`] for an empty name,
    /// one over 255 bytes or one with control characters or surrounding blanks.
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
                let writer = &mut self.writer;
                self.chunker.cut(false, |chunks| writer.process(chunks))?;
            }
        }
        Ok(())
    }

    /// End the current item.
    pub fn finish_item(&mut self) -> Result<()> {
        self.finish_item_inner().map_err(overtaken)
    }

    fn finish_item_inner(&mut self) -> Result<()> {
        if self.writer.item.is_none() {
            return Err(Error::InvalidArgument("no item is open".into()));
        }
        let writer = &mut self.writer;
        self.chunker.cut(true, |chunks| writer.process(chunks))?;
        writer.finish_item()
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

/// The one snapshot among `ids` that `reference` (a full id or unique hex prefix, any case,
/// blanks around it ignored) names. Errors: [`Error::SnapshotNotFound`] for no match or a
/// reference that is not hex, [`Error::AmbiguousSnapshotId`] (matches sorted) for several.
pub(crate) fn resolve_snapshot_prefix(
    ids: impl IntoIterator<Item = Id>,
    reference: &str,
) -> Result<Id> {
    let wanted = reference.trim().to_ascii_lowercase();
    if wanted.is_empty() || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::SnapshotNotFound(format!(
            "{reference:?} (not a hex id)"
        )));
    }
    let mut matches: Vec<Id> = ids
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&wanted))
        .collect();
    matches.sort();
    match matches.as_slice() {
        [] => Err(Error::SnapshotNotFound(reference.to_string())),
        [one] => Ok(*one),
        _ => Err(Error::AmbiguousSnapshotId {
            prefix: reference.to_string(),
            matches: matches.iter().map(Id::to_hex).collect(),
        }),
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

/// Streams the content of one item, chunk by chunk, each checked against its id.
pub struct ItemReader<S: Storage> {
    repo: Repository<S>,
    snapshot: Id,
    item: Item,
    list_pos: usize,
    ids: Vec<Id>,
    id_pos: usize,
    produced: u64,
    chunks: u64,
}

impl<S: Storage> ItemReader<S> {
    /// The item being read.
    pub fn item(&self) -> &Item {
        &self.item
    }

    fn whose(&self) -> String {
        format!("item {:?} of snapshot {}", self.item.name, self.snapshot)
    }

    fn load_next_list(&mut self) -> Result<bool> {
        let Some(list_id) = self.item.chunk_lists.get(self.list_pos).copied() else {
            return Ok(false);
        };
        let whose = self.whose();
        let raw = self
            .repo
            .read_blobs(&[list_id], &|_| whose.clone())?
            .pop()
            .expect("one blob asked, one returned");
        let ids = decode_chunk_list(&raw).map_err(|why| {
            Error::corruption(format!("chunk list {list_id} of {}", self.whose()), why)
        })?;
        // State advances only after a successful read, so a failed call can be retried.
        self.list_pos += 1;
        self.ids = ids;
        self.id_pos = 0;
        Ok(true)
    }

    /// The next chunks of content in order (about 8 MiB), or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
        while self.id_pos >= self.ids.len() {
            if !self.load_next_list()? {
                if self.produced != self.item.size || self.chunks != self.item.chunk_count {
                    return Err(Error::corruption(
                        self.whose(),
                        format!(
                            "restored {} bytes in {} chunks, manifest says {} bytes in {} chunks",
                            self.produced, self.chunks, self.item.size, self.item.chunk_count
                        ),
                    ));
                }
                return Ok(None);
            }
        }
        let mut take = Vec::new();
        let mut bytes = 0u64;
        {
            let guard = self.repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            let mut pos = self.id_pos;
            while pos < self.ids.len() && bytes < RESTORE_BATCH_BYTES {
                let id = self.ids[pos];
                bytes += index.get(&id).map_or(0, |l| l.entry.raw_len as u64);
                take.push(id);
                pos += 1;
            }
        }
        let whose = self.whose();
        let out = self.repo.read_blobs(&take, &|_| whose.clone())?;
        self.id_pos += take.len();
        self.chunks += out.len() as u64;
        self.produced += out.iter().map(|c| c.len() as u64).sum::<u64>();
        if self.produced > self.item.size {
            return Err(Error::corruption(
                self.whose(),
                "more content than the manifest's size",
            ));
        }
        Ok(Some(out))
    }
}
