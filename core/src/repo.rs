//! The repository handle: init and open, configuration and keys, the lazily loaded index,
//! snapshot listing and lookup, and locks. The operations on it live in [`crate::ops`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};

use chrono::{DateTime, FixedOffset};

use crate::compress::Compression;
use crate::config::{
    config_copy_parts, encode_config_copy, ChunkerConfig, CompressionConfig, Config, Features,
    ParityConfig, ALWAYS_WRITTEN, CONFIG_COPY_KEY, CONFIG_COPY_LABEL, CONFIG_KEY, FORMAT_NAME,
    FORMAT_VERSION, OLDEST_FORMAT_VERSION,
};
use crate::crypto::{random_bytes, KdfParams, Keys, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{decode_index_file, Index, IndexBuilder, IndexedPack, Location};
use crate::keyfile::{check_new_passphrase, unlock_master, write_key_file, NewKey};
use crate::lock::{self, HeldLock, LockInfo, StaleCheck, UnlockReport};
use crate::pack::pack_key;
use crate::snapshot::{
    decode_snapshot, snapshot_copy_key, snapshot_id_of_copy_key, snapshot_id_of_key, snapshot_key,
    Snapshot, SNAPSHOT_COPY_PREFIX, SNAPSHOT_PREFIX,
};
use crate::storage::{Storage, StorageError};

/// Times a read reloads the index after finding a pack gone (a prune moved its blobs) before
/// reporting the pack missing.
pub(crate) const RELOCATE_ATTEMPTS: usize = 3;

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
    /// Whether new chunks may be stored as deltas against similar stored chunks (requires the
    /// `delta` feature to read the repository: binaries from before it cannot open it).
    pub delta: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            compression: Compression::Zstd,
            compression_level: None,
            kdf: KdfParams::default(),
            chunker: ChunkerConfig::default(),
            pack_size: 8 << 20,
            delta: crate::delta::can_encode(),
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
        self.admits(s.time, &s.manifest.tags, s.manifest.host.as_deref())
    }

    /// Whether a snapshot created at `time`, with `tags`, made by `host` (`None`: unknown)
    /// passes the filter: the rule [`matches`](Self::matches) applies, for faces that hold
    /// snapshots as views rather than as [`Snapshot`]s (the browser's snapshot list).
    pub fn admits(
        &self,
        time: DateTime<FixedOffset>,
        tags: &BTreeMap<String, String>,
        host: Option<&str>,
    ) -> bool {
        self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
            && self.after.is_none_or(|a| time >= a)
            && self.before.is_none_or(|b| time <= b)
            && self.host.as_deref().is_none_or(|h| host == Some(h))
    }
}

/// What [`Repository::scan_snapshots`] found: every snapshot that reads, and every one that
/// does not.
#[derive(Debug, Default)]
pub struct SnapshotScan {
    /// Readable snapshots passing the filter, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Snapshots whose manifest cannot be read (a filter cannot be applied to them), by id.
    pub unreadable: Vec<UnreadableSnapshot>,
}

/// A snapshot whose manifest could not be read.
#[derive(Debug)]
pub struct UnreadableSnapshot {
    /// The snapshot id (its manifest's file name).
    pub id: Id,
    /// Why: the error reading or decoding the manifest.
    pub error: Error,
}

/// [`UnreadableSnapshot`] as reported: JSON `{"id", "reason"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableSnapshotView {
    /// The snapshot id, 64 hex digits.
    pub id: String,
    /// Why its manifest cannot be read, in words.
    pub reason: String,
}

impl UnreadableSnapshot {
    /// What to report about it.
    pub fn view(&self) -> UnreadableSnapshotView {
        UnreadableSnapshotView {
            id: self.id.to_hex(),
            reason: self.error.to_string(),
        }
    }
}

struct Inner<S> {
    storage: S,
    config: Config,
    keys: Keys,
    index: RwLock<Option<Index>>,
    /// The index files the loaded index was built from (to notice other processes' changes).
    index_files: Mutex<BTreeSet<String>>,
    /// Index files found damaged or unreadable when the index was loaded (what is wrong with
    /// each): their packs were indexed from their `.idx` files instead (readers go on), and
    /// writers refuse until repair rebuilds the index.
    index_damage: Mutex<Vec<Error>>,
    /// Locks taken through this handle and not yet released, for [`Repository::refresh_locks`].
    held: Mutex<Vec<Weak<HeldLock>>>,
    /// Whether `config.json` is known to carry every feature this build writes.
    writable: AtomicBool,
    /// Whether new chunks may be delta-encoded (`config.json`'s `delta` feature, or turned on
    /// through this handle).
    delta: AtomicBool,
    /// Whether metadata files have copies (`config.json`'s `metadata-copies` feature, or
    /// turned on through this handle).
    copies: AtomicBool,
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
    /// Create a repository in empty storage. With a passphrase it is encrypted (an empty one is
    /// refused: see [`crate::keyfile::check_new_passphrase`]).
    ///
    /// # Errors
    /// [`Error::RepositoryExists`] when a repository is there; [`Error::NotEmpty`] when other files are;
    /// [`Error::InvalidArgument`] for an empty passphrase or invalid options; [`Error::Storage`].
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
        check_location_free(&storage)?;
        let repo_id = Id(random_bytes(rng));
        let config = new_config(options, &repo_id, passphrase.is_some());
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
                let key =
                    write_key_file(&storage, &master, &repo_id, &new_key, rng, config.copies())?;
                unlocked = Some((master, key));
                Keys::from_master(&master, &repo_id)
            }
            None => Keys::plain(),
        };
        // config.json last: its presence is what makes the repository exist (its sealed copy
        // right after, by the init that created it: concurrent inits never touch another's).
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        storage.put(CONFIG_KEY, &json).map_err(|e| match e {
            StorageError::AlreadyExists(_) => {
                // Another init won the race (the put is create-only): withdraw our key file,
                // which wraps a master key of a repository that does not exist.
                if let Some((_, key)) = &unlocked {
                    let _ = crate::keyfile::delete_key_file(&storage, key);
                }
                Error::RepositoryExists {
                    location: storage.location(),
                }
            }
            e => e.into(),
        })?;
        if config.copies() {
            // Missing if this init dies here: verify counts it, repair writes it.
            let copy = encode_config_copy(&keys, &repo_id, &json);
            crate::storage::put_exact(&storage, CONFIG_COPY_KEY, &copy)?;
        }
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
                delta: AtomicBool::new(config.delta()),
                copies: AtomicBool::new(config.copies()),
                storage,
                config,
                keys,
                index: RwLock::new(index),
                index_files: Mutex::new(BTreeSet::new()),
                index_damage: Mutex::new(Vec::new()),
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
    ///
    /// # Errors
    /// [`Error::RepositoryNotFound`] without `config.json`; [`Error::Unsupported`] for a format or
    /// feature this build cannot read; [`Error::WrongPassphrase`] when no key file opens;
    /// [`Error::Corruption`] for a damaged `config.json` or no readable key file; [`Error::Storage`].
    pub fn open(storage: S, passphrase: Option<&[u8]>) -> Result<Self> {
        // Each version: there (its bytes, or the error reading it), or not there.
        let get = |key: &str| match storage.get(key) {
            Ok(raw) => Ok(Some(Ok(raw))),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e @ StorageError::Archived { .. }) => Err(Error::from(e)),
            Err(e) => Ok(Some(Err(e))),
        };
        let (primary_raw, copy_raw) = (get(CONFIG_KEY)?, get(CONFIG_COPY_KEY)?);
        if primary_raw.is_none() && copy_raw.is_none() {
            return Err(Error::RepositoryNotFound {
                location: storage.location(),
            });
        }
        // A version that cannot be read (an I/O error, a failing store) is passed over for the
        // other; its error is the answer when the other does not serve either.
        let primary: Result<Config> = match primary_raw {
            Some(Ok(raw)) => parse_config(&raw, CONFIG_KEY),
            Some(Err(e)) => Err(e.into()),
            None => Err(Error::corruption(
                CONFIG_KEY,
                "missing (and its sealed copy does not open)",
            )),
        };
        let copy_raw = copy_raw.and_then(std::result::Result::ok);
        let copy = copy_raw.as_deref().and_then(config_copy_parts);
        // An unencrypted repository's copy is sealed with a checksum only: it opens without keys.
        let plain_copy = match copy.map(|(_, sealed)| Keys::plain().open(CONFIG_COPY_LABEL, sealed))
        {
            Some(Ok(json)) => Some(parse_config(&json, CONFIG_COPY_KEY)?),
            _ => None,
        };
        if let Some(config) = plain_copy.filter(|c| !c.encrypted()) {
            // The copy authenticates: it wins over a config.json that differs (verify reports
            // that, repair rewrites config.json).
            return Ok(Self::from_parts(storage, config, Keys::plain(), None, None));
        }
        let encrypted = match &primary {
            Ok(c) => c.encrypted(),
            Err(_) => copy.is_some(),
        };
        if !encrypted {
            let config = primary?;
            return Ok(Self::from_parts(storage, config, Keys::plain(), None, None));
        }
        let pass = passphrase.ok_or_else(|| {
            Error::WrongPassphrase(format!(
                "the repository at {} is encrypted: a passphrase is needed",
                storage.location()
            ))
        })?;
        // The repository id binds the key files (their AAD): try config.json's, then the
        // copy's. The one a key file opens with is the repository's, so a config.json whose id
        // was changed is told apart from a wrong passphrase.
        let mut candidates: Vec<Id> = Vec::new();
        if let Ok(c) = &primary {
            candidates.extend(Id::from_hex(&c.id));
        }
        if let Some((id, _)) = copy {
            if !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        let copies = primary.as_ref().map_or(true, Config::copies);
        let mut first_error = None;
        for repo_id in candidates {
            let (master, key) = match unlock_master(&storage, &repo_id, pass, copies) {
                Ok(unlocked) => unlocked,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let keys = Keys::from_master(&master, &repo_id);
            let sealed = copy.filter(|(id, _)| *id == repo_id).map(|(_, s)| s);
            let authenticated = match sealed.map(|s| keys.open(CONFIG_COPY_LABEL, s)) {
                Some(Ok(json)) => Some(parse_config(&json, CONFIG_COPY_KEY)?),
                _ => None,
            };
            let config = match (authenticated, &primary) {
                (Some(c), _) if c.id == repo_id.to_hex() => c,
                (_, Ok(p)) if p.id == repo_id.to_hex() => p.clone(),
                _ => {
                    return Err(primary.err().unwrap_or_else(|| {
                        Error::corruption(CONFIG_KEY, "does not name the repository its keys open")
                    }))
                }
            };
            return Ok(Self::from_parts(
                storage,
                config,
                keys,
                None,
                Some((master, key)),
            ));
        }
        Err(match (first_error, primary) {
            (Some(e), _) => e,
            (None, Err(e)) => e,
            (None, Ok(_)) => Error::corruption(CONFIG_KEY, "repository id is not 64 hex digits"),
        })
    }

    /// The settings as stored: the sealed copy when it opens (it authenticates), else
    /// `config.json`. Writers start from this, not from the handle's (possibly older) view.
    ///
    /// # Errors
    /// [`Error::Corruption`] when neither reads; [`Error::Unsupported`]; [`Error::Storage`].
    pub(crate) fn stored_config(&self) -> Result<Config> {
        let versions = self.config_versions()?;
        match (versions.copy, versions.file) {
            (ConfigVersion::Read(c), _) | (_, ConfigVersion::Read(c)) => Ok(c),
            (_, file) => Err(Error::corruption(CONFIG_KEY, file.describe())),
        }
    }

    /// `config.json` and its sealed copy, each read and checked on its own: it is there, it
    /// parses, and it names this repository (the copy's seal opens with this handle's keys).
    /// Comparing the settings is left to the caller.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a version holding a format or feature this build does not
    /// know (a newer program's settings: never to be written over); [`Error::Storage`] when a
    /// version is in an archive storage class.
    pub(crate) fn config_versions(&self) -> Result<ConfigVersions> {
        let storage = &self.inner.storage;
        let id = &self.inner.config.id;
        let read = |key: &str| -> Result<std::result::Result<Vec<u8>, ConfigVersion>> {
            match storage.get(key) {
                Ok(raw) => Ok(Ok(raw)),
                Err(StorageError::NotFound(_)) => Ok(Err(ConfigVersion::Missing)),
                Err(e @ StorageError::Archived { .. }) => Err(e.into()),
                Err(e) => Ok(Err(ConfigVersion::Damaged(format!("unreadable: {e}")))),
            }
        };
        let parsed = |json: &[u8], key: &str| match parse_config(json, key) {
            Ok(c) if c.id == *id => Ok(ConfigVersion::Read(c)),
            Ok(_) => Ok(ConfigVersion::Damaged(
                "it names another repository id".into(),
            )),
            Err(e @ Error::Unsupported(_)) => Err(e),
            Err(e) => Ok(ConfigVersion::Damaged(e.detail())),
        };
        let file = match read(CONFIG_KEY)? {
            Ok(raw) => parsed(&raw, CONFIG_KEY)?,
            Err(v) => v,
        };
        // Without metadata copies a copy is not kept up to date: it is not a version.
        let copy = match if self.copies() {
            read(CONFIG_COPY_KEY)?
        } else {
            Err(ConfigVersion::Missing)
        } {
            Err(v) => v,
            Ok(raw) => match config_copy_parts(&raw) {
                None => ConfigVersion::Damaged("too short or without its magic".into()),
                Some((copy_id, _)) if copy_id.to_hex() != *id => {
                    ConfigVersion::Damaged("it names another repository id".into())
                }
                Some((_, sealed)) => match self.inner.keys.open(CONFIG_COPY_LABEL, sealed) {
                    Ok(json) => parsed(&json, CONFIG_COPY_KEY)?,
                    Err(why) => ConfigVersion::Damaged(format!("its seal does not open ({why})")),
                },
            },
        };
        Ok(ConfigVersions { file, copy })
    }

    /// Store `config`: with metadata copies its sealed copy first, then `config.json` (each
    /// replaced atomically), so the copy is never older than `config.json`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub(crate) fn write_config(&self, config: &Config) -> Result<()> {
        let json = serde_json::to_vec_pretty(config).expect("config serializes");
        let storage = &self.inner.storage;
        if config.copies() {
            let id = Id::from_hex(&config.id).expect("validated");
            storage.replace(
                CONFIG_COPY_KEY,
                &encode_config_copy(&self.inner.keys, &id, &json),
            )?;
        }
        storage.replace(CONFIG_KEY, &json)?;
        Ok(())
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
    ///
    /// One damaged or unreadable index file costs only itself: the packs no readable index
    /// file lists are indexed from their `.idx` files (each checked against its pack's id and
    /// size), and the damage is kept for [`Repository::check_index_sound`].
    fn load_index_once(&self) -> Result<Index> {
        let storage = &self.inner.storage;
        let mut index = IndexBuilder::new();
        let keys: BTreeSet<String> = crate::index::list_index_files(storage)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let present = self.listed_packs()?;
        let mut damage = Vec::new();
        let mut indexed = HashSet::new();
        for key in &keys {
            let decoded = match storage.get(key) {
                Err(e @ (StorageError::NotFound(_) | StorageError::Archived { .. })) => {
                    return Err(e.into())
                }
                Err(e) => Err(Error::corruption(
                    format!("index file {key}"),
                    format!("cannot be read: {e}"),
                )),
                Ok(data) => decode_index_file(&self.inner.keys, key, &data),
            };
            match decoded {
                Ok(packs) => {
                    for p in packs {
                        if present.contains(&pack_key(&p.id)) {
                            index.add_pack(p.id, p.size, &p.entries);
                            indexed.insert(p.id);
                        }
                    }
                }
                Err(e) => damage.push(e),
            }
        }
        if !damage.is_empty() {
            self.index_from_idx_files(&present, &indexed, &mut index);
        }
        *self
            .inner
            .index_damage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = damage;
        *self
            .inner
            .index_files
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(index.finish())
    }

    /// Add to `index` every pack among `present` (storage keys) that is not in `indexed`, from
    /// its `.idx` file when that decodes and names the pack (id and size as listed). Packs
    /// left out are not found by readers, which then name the missing chunk.
    fn index_from_idx_files(
        &self,
        present: &HashSet<String>,
        indexed: &HashSet<Id>,
        index: &mut IndexBuilder,
    ) {
        let storage = &self.inner.storage;
        let Ok(listed) = storage.list(crate::layout::PACK_DATA_PREFIX) else {
            return;
        };
        let sizes: std::collections::HashMap<Id, u64> = listed
            .into_iter()
            .filter(|(k, _)| present.contains(k))
            .filter_map(|(k, size)| match crate::layout::classify(&k) {
                Some((crate::layout::Kind::Pack, Some(id))) => Some((id, size)),
                _ => None,
            })
            .collect();
        for (id, size) in sizes {
            if indexed.contains(&id) {
                continue;
            }
            let key = crate::pack::idx_key(&id);
            let Ok(data) = storage.get(&key) else {
                continue;
            };
            if let Ok((pid, psize, entries)) =
                crate::pack::decode_idx(&self.inner.keys, &key, &data)
            {
                if pid == id && psize == size {
                    index.add_pack(id, size, &entries);
                }
            }
        }
    }

    /// Fail when the loaded index was built past damaged index files: readers go on from the
    /// packs' `.idx` files, but a writer must not reuse blobs the committed index does not
    /// vouch for.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the first damaged index file and what fixes it.
    pub(crate) fn check_index_sound(&self) -> Result<()> {
        drop(self.index()?);
        let damage = self
            .inner
            .index_damage
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match damage.first() {
            None => Ok(()),
            Some(e) => Err(Error::corruption(
                match e {
                    Error::Corruption { object, .. } => object.clone(),
                    _ => "index".into(),
                },
                format!(
                    "{}; nothing is written until `repair` rebuilds the index ({} damaged index \
                     file(s); restores still work)",
                    e.detail(),
                    damage.len()
                ),
            )),
        }
    }

    /// Keys of every pack in storage (one listing).
    fn listed_packs(&self) -> Result<HashSet<String>> {
        Ok(self
            .inner
            .storage
            .list(crate::layout::PACK_DATA_PREFIX)?
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

    pub(crate) fn index_add(&self, packs: &[IndexedPack]) -> Result<()> {
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
    pub(crate) fn index_file_written(&self, key: &str) {
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

    /// Ids of every snapshot, from file names alone (with metadata copies, a snapshot whose
    /// manifest is lost but whose copy is not is one too), sorted.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        Ok(self.snapshot_files()?.into_keys().collect())
    }

    /// Every snapshot id with the bytes its manifest and its copy take: a listing of
    /// `snapshots/` and, with metadata copies, of `copies/snapshots/`.
    pub(crate) fn snapshot_files(&self) -> Result<BTreeMap<Id, u64>> {
        let storage = &self.inner.storage;
        let mut out = BTreeMap::new();
        if self.copies() {
            for (k, size) in storage.list(SNAPSHOT_COPY_PREFIX)? {
                if let Some(id) = snapshot_id_of_copy_key(&k) {
                    *out.entry(id).or_default() += size;
                }
            }
        }
        for (k, size) in storage.list(SNAPSHOT_PREFIX)? {
            if let Some(id) = snapshot_id_of_key(&k) {
                *out.entry(id).or_default() += size;
            }
        }
        Ok(out)
    }

    /// Read one snapshot manifest: the file under `snapshots/`, or when it is missing or
    /// damaged its copy under `copies/snapshots/` (feature `metadata-copies`; docs/FORMAT.md,
    /// "Metadata copies").
    ///
    /// # Errors
    /// [`Error::SnapshotNotFound`] when neither is there; [`Error::Corruption`] when neither
    /// reads (naming what is wrong with each); [`Error::Storage`].
    pub fn load_snapshot(&self, id: Id) -> Result<Snapshot> {
        let storage = &self.inner.storage;
        let read = |key: &str| -> Result<Snapshot> {
            let data = storage.get(key).map_err(|e| match e {
                StorageError::NotFound(_) => Error::SnapshotNotFound(id.to_hex()),
                e => e.into(),
            })?;
            decode_snapshot(&self.inner.keys, id, &data)
        };
        let primary = read(&snapshot_key(&id));
        if !self.copies() {
            return primary;
        }
        match primary {
            Ok(s) => Ok(s),
            // Missing, damaged, or unreadable (an I/O error, a directory in its place): the copy.
            Err(
                first @ (Error::SnapshotNotFound(_) | Error::Corruption { .. } | Error::Storage(_)),
            ) => match read(&snapshot_copy_key(&id)) {
                Ok(s) => Ok(s),
                Err(Error::SnapshotNotFound(_)) => Err(first),
                Err(Error::Storage(e)) if matches!(first, Error::Storage(_)) => {
                    Err(Error::Storage(e))
                }
                Err(Error::Storage(e)) => Err(Error::corruption(
                    format!("snapshot {id}"),
                    format!("{first}; its copy in {SNAPSHOT_COPY_PREFIX} cannot be read: {e}"),
                )),
                Err(Error::Corruption { reason, .. }) => Err(Error::corruption(
                    format!("snapshot {id}"),
                    match first {
                        Error::Corruption { reason: r, .. } => {
                            format!("{r}; its copy in {SNAPSHOT_COPY_PREFIX}: {reason}")
                        }
                        _ => format!(
                            "its manifest is missing and its copy in \
                                 {SNAPSHOT_COPY_PREFIX} is damaged: {reason}"
                        ),
                    },
                )),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether metadata files have copies under `copies/` (the `metadata-copies` feature,
    /// or turned on through this handle by `repair`).
    pub fn copies(&self) -> bool {
        self.inner.copies.load(Ordering::SeqCst)
    }

    /// Turn metadata copies on through this handle (after `repair` copied every file).
    pub(crate) fn set_copies(&self) {
        self.inner.copies.store(true, Ordering::SeqCst);
    }

    /// Snapshots passing `filter`, oldest first. Reads manifests only, never chunk lists.
    ///
    /// # Errors
    /// [`Error::Corruption`] for a manifest that does not decode (the first met: see
    /// [`scan_snapshots`](Self::scan_snapshots) for a listing that goes on past damage);
    /// [`Error::Storage`].
    pub fn list_snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<Snapshot>> {
        let scan = self.scan_snapshots(filter)?;
        match scan.unreadable.into_iter().next() {
            Some(u) => Err(u.error),
            None => Ok(scan.snapshots),
        }
    }

    /// Every snapshot passing `filter` (oldest first) and every one whose manifest cannot be
    /// read: one damaged manifest hides nothing else. A manifest deleted between the listing
    /// and its reading (a concurrent prune or forget) is neither.
    ///
    /// # Errors
    /// [`Error::Storage`] when the listing itself fails, or for an error reading a manifest
    /// other than its absence or damage (the storage is failing: nothing would be reliable).
    pub fn scan_snapshots(&self, filter: &SnapshotFilter) -> Result<SnapshotScan> {
        let mut out = SnapshotScan::default();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(id) {
                Ok(s) if filter.matches(&s) => out.snapshots.push(s),
                Ok(_) | Err(Error::SnapshotNotFound(_)) => {}
                // Damaged, or this one file unreadable (an I/O error, a directory in its
                // place): it costs that snapshot, not the listing. An object in an archive
                // class is not damage: that stops the listing with its own error.
                Err(error @ Error::Corruption { .. }) => {
                    out.unreadable.push(UnreadableSnapshot { id, error })
                }
                Err(e @ Error::Storage(StorageError::Archived { .. })) => return Err(e),
                Err(error @ Error::Storage(_)) => {
                    out.unreadable.push(UnreadableSnapshot { id, error })
                }
                Err(e) => return Err(e),
            }
        }
        out.snapshots
            .sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        out.unreadable.sort_by_key(|u| u.id);
        Ok(out)
    }

    /// The newest snapshot passing `filter`. It is never a stale answer: when a manifest
    /// cannot be read, that snapshot may be newer (or match), so this fails naming it.
    ///
    /// # Errors
    /// [`Error::SnapshotNotFound`] when none passes; [`Error::Corruption`] naming every
    /// unreadable manifest; [`Error::Storage`].
    pub fn latest_snapshot(&self, filter: &SnapshotFilter) -> Result<Snapshot> {
        let mut scan = self.scan_snapshots(filter)?;
        if !scan.unreadable.is_empty() {
            let ids: Vec<String> = scan.unreadable.iter().map(|u| u.id.to_hex()).collect();
            let why: Vec<String> = scan.unreadable.iter().map(|u| u.error.detail()).collect();
            return Err(Error::corruption(
                format!("snapshot {}", ids.join(", ")),
                format!(
                    "the latest snapshot cannot be chosen: {} cannot be read and may be newer \
                     ({}); name a snapshot by id, or run repair",
                    if ids.len() == 1 {
                        "this manifest"
                    } else {
                        "these manifests"
                    },
                    why.join("; ")
                ),
            ));
        }
        scan.snapshots.pop().ok_or_else(|| {
            Error::SnapshotNotFound(if filter.tags.is_empty() && filter.host.is_none() {
                "latest (the repository has no snapshots)".into()
            } else {
                "latest (no snapshot matches)".into()
            })
        })
    }

    /// A snapshot by full id, unique id prefix, or `latest`.
    ///
    /// # Errors
    /// [`Error::SnapshotNotFound`], [`Error::AmbiguousSnapshotId`]; [`Error::Corruption`] for a
    /// manifest that does not decode; [`Error::Storage`].
    pub fn get_snapshot(&self, id_or_prefix: &str) -> Result<Snapshot> {
        let wanted = id_or_prefix.trim().to_ascii_lowercase();
        if wanted == "latest" {
            return self.latest_snapshot(&SnapshotFilter::default());
        }
        let id = resolve_snapshot_prefix(self.snapshot_ids()?, id_or_prefix)?;
        self.load_snapshot(id)
    }

    /// Whether new chunks may be stored as deltas (docs/FORMAT.md, "Delta blobs").
    pub fn delta(&self) -> bool {
        self.inner.delta.load(Ordering::SeqCst) && crate::delta::can_encode()
    }

    /// Turn delta encoding on for this repository: `config.json` gains the `delta` feature
    /// (read and write), so binaries that do not know it stop opening the repository. Does
    /// nothing when it is on already.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when this build cannot write here or make deltas;
    /// [`Error::Corruption`] for an unreadable `config.json`; [`Error::Storage`].
    pub fn enable_delta(&self) -> Result<()> {
        if !crate::delta::can_encode() {
            return Err(Error::Unsupported(
                "this build cannot make deltas (it has no zstd encoder that takes a prefix)".into(),
            ));
        }
        self.prepare_write()?;
        let stored = self.stored_config()?;
        if !stored.delta() {
            self.write_config(&stored.with_delta())?;
        }
        self.inner.delta.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Add the `metadata-copies` feature to `config.json` (repair, once every manifest has its
    /// copy): from then on readers use the copies and older binaries may not write.
    pub(crate) fn enable_copies(&self) -> Result<()> {
        let stored = self.stored_config()?;
        if !stored.copies() {
            self.write_config(&stored.with_copies())?;
        }
        self.set_copies();
        Ok(())
    }

    /// Make sure this build may write here, upgrading `config.json` on the first write to a
    /// repository of an older format (docs/FORMAT.md, "Format versions and features").
    pub fn prepare_write(&self) -> Result<()> {
        if self.inner.writable.load(Ordering::SeqCst) {
            return Ok(());
        }
        let stored = self.stored_config()?;
        stored.check_writable().map_err(Error::Unsupported)?;
        if stored.needs_upgrade() {
            self.write_config(&stored.upgraded())?;
        }
        self.inner.writable.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Take a lock for an operation (after [`Repository::prepare_write`]); it is renewed by
    /// [`Repository::refresh_locks`] until released with [`Repository::unlock`].
    ///
    /// # Errors
    /// [`Error::Locked`] naming a conflicting lock that is not stale; [`Error::Storage`].
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

/// One stored version of the settings (`config.json`, or its sealed copy `copies/config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigVersion {
    /// Not there.
    Missing,
    /// There, but not this repository's settings (why).
    Damaged(String),
    /// There and read: valid settings naming this repository.
    Read(Config),
}

impl ConfigVersion {
    /// In words, for a message naming the file.
    pub(crate) fn describe(&self) -> String {
        match self {
            ConfigVersion::Missing => "missing".into(),
            ConfigVersion::Damaged(why) => format!("damaged: {why}"),
            ConfigVersion::Read(_) => "intact".into(),
        }
    }

    /// Whether it reads and holds exactly `want`.
    pub(crate) fn holds(&self, want: &Config) -> bool {
        matches!(self, ConfigVersion::Read(c) if c == want)
    }
}

/// Both stored versions of the settings (see [`Repository::config_versions`]).
pub(crate) struct ConfigVersions {
    /// `config.json`.
    pub file: ConfigVersion,
    /// `copies/config` ([`ConfigVersion::Missing`] in a repository without metadata copies).
    pub copy: ConfigVersion,
}

/// `config.json` (or the JSON of its copy, stored at `key`) parsed and checked: a format or
/// feature this build does not know is [`Error::Unsupported`], anything else wrong damage.
fn parse_config(raw: &[u8], key: &str) -> Result<Config> {
    let config: Config = serde_json::from_slice(raw)
        .map_err(|e| Error::corruption(key, format!("not a valid config: {e}")))?;
    config.validate().map_err(|reason| {
        if config.format == FORMAT_NAME
            && !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&config.version)
            || reason.contains("feature")
        {
            Error::Unsupported(reason)
        } else {
            Error::corruption(key, reason)
        }
    })?;
    if Id::from_hex(&config.id).is_none() {
        return Err(Error::corruption(key, "repository id is not 64 hex digits"));
    }
    Ok(config)
}

/// The configuration of a new repository with `options` (and id `repo_id`).
fn new_config(options: &InitOptions, repo_id: &Id, encrypted: bool) -> Config {
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
        encryption: if encrypted { "aes-256-gcm" } else { "none" }.into(),
        chunk_id: if encrypted { "hmac-sha256" } else { "sha256" }.into(),
        pack_size: options.pack_size,
        parity: ParityConfig::default(),
        features: Features {
            read: Vec::new(),
            write: ALWAYS_WRITTEN.iter().map(|f| f.to_string()).collect(),
        },
    };
    let config = config.with_copies();
    if options.delta {
        config.with_delta()
    } else {
        config
    }
}

/// Refuse a location that holds a repository, or anything but the key files an unfinished
/// init of ours left (whose repository was never created; they open nothing and are left
/// alone).
fn check_location_free(storage: &dyn Storage) -> Result<()> {
    match storage.get(CONFIG_KEY) {
        Ok(_) => {
            return Err(Error::RepositoryExists {
                location: storage.location(),
            })
        }
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // The location must be empty but for what an unfinished init of ours left: key files and
    // their copies (whose repository was never created; they open nothing and are left alone).
    let mut found = Vec::new();
    for (key, _) in storage.list("")? {
        if key == CONFIG_KEY {
            // Another init finished since the look above.
            return Err(Error::RepositoryExists {
                location: storage.location(),
            });
        }
        if key == CONFIG_COPY_KEY {
            // An unfinished init's (it is replaced).
            continue;
        }
        let leftover = (crate::layout::is(crate::layout::Kind::Key, &key)
            || crate::layout::is(crate::layout::Kind::KeyCopy, &key))
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
    Ok(())
}
