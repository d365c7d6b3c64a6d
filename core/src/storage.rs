//! The storage trait: the only way the engine reaches bytes at rest.
//!
//! Keys are `/`-separated relative paths such as `packs/data/ab/ab12….pack`. Every object is
//! written once, whole, and never modified; the backends (filesystem, browser files, object
//! storage) only need get, ranged get, create-only put, list by prefix and delete.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A storage backend failure, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("{0} does not exist in the repository")]
    NotFound(String),
    /// A create-only put found the object already there.
    #[error("{0} already exists in the repository")]
    AlreadyExists(String),
    /// The object exists but is in an archive storage class (S3 Glacier Flexible Retrieval,
    /// Deep Archive…): it must be restored from the archive before it can be read. Never a
    /// sign of damage.
    #[error("object {key} is in archive storage class {class}: restore it from the archive first (for example `aws s3api restore-object`), then run this again")]
    Archived {
        /// The object's storage path.
        key: String,
        /// Its storage class (e.g. `GLACIER`).
        class: String,
    },
    /// Any other backend failure (I/O error, no space left, permission denied…).
    #[error("storage error on {key}: {message}")]
    Backend {
        /// The object's storage path.
        key: String,
        /// The backend's message.
        message: String,
    },
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// Object storage as the engine sees it.
pub trait Storage {
    /// Human-readable location of the repository (a path or URL), used in messages.
    fn location(&self) -> String;
    /// The whole object.
    fn get(&self, key: &str) -> StorageResult<Vec<u8>>;
    /// `length` bytes at `offset`; fewer only if the object is shorter (the caller checks).
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>>;
    /// Store a new object atomically and durably: it is either absent or complete, and a
    /// reader never sees a partial object. Fails with `AlreadyExists` if the key is taken.
    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()>;
    /// Several ranged reads (`(key, offset, length)`, as [`Storage::get_range`]), results in
    /// the order asked. Object storage, where each request costs a round trip, overrides it to
    /// issue them concurrently; the default reads one after the other.
    fn get_ranges(&self, requests: &[(String, u64, u64)]) -> Vec<StorageResult<Vec<u8>>> {
        requests
            .iter()
            .map(|(key, offset, length)| self.get_range(key, *offset, *length))
            .collect()
    }
    /// Every key (with its size in bytes) that starts with `prefix`, in no particular order.
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>>;
    /// [`Storage::list`], with the time each object was written *by the storage's own clock*
    /// (milliseconds since the Unix epoch: a file's mtime, S3's `Last-Modified`), `None` where
    /// the storage cannot tell. Lock ages are measured on this clock, so that no host's clock
    /// matters (docs/RELIABILITY.md).
    fn list_with_times(&self, prefix: &str) -> StorageResult<Vec<(String, u64, Option<i64>)>> {
        Ok(self
            .list(prefix)?
            .into_iter()
            .map(|(k, s)| (k, s, None))
            .collect())
    }
    /// Replace an object atomically (readers see the old or the new bytes, never a mix). Used
    /// for one object only: `config.json`, when a format upgrade adds a feature to it.
    fn replace(&self, key: &str, _data: &[u8]) -> StorageResult<()> {
        Err(StorageError::Backend {
            key: key.to_string(),
            message: "this storage cannot replace objects".into(),
        })
    }
    /// Remove an object; removing a missing object is `NotFound`.
    fn delete(&self, key: &str) -> StorageResult<()>;
    /// [`put_exact`], handing over the bytes: a storage that writes in the background keeps
    /// them instead of copying (the default borrows them for [`Storage::put`]).
    fn put_exact_owned(&self, key: &str, data: Vec<u8>) -> StorageResult<()> {
        exact_put(self, key, &data)
    }
    /// Remove what interrupted writes left behind (a killed writer's temporary files) that the
    /// storage's clock says were written before `written_before_ms` (`None`: all), returning how
    /// many were removed. The engine calls it under an exclusive lock with the stale age as the
    /// margin, so that a live writer whose lock was judged stale keeps its file; a storage whose
    /// puts leave nothing behind keeps the default.
    fn remove_partial_writes(&self, _written_before_ms: Option<i64>) -> StorageResult<u64> {
        Ok(0)
    }
}

impl<S: Storage + ?Sized> Storage for &S {
    fn location(&self) -> String {
        (**self).location()
    }
    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        (**self).get_range(key, offset, length)
    }
    fn get_ranges(&self, requests: &[(String, u64, u64)]) -> Vec<StorageResult<Vec<u8>>> {
        (**self).get_ranges(requests)
    }
    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        (**self).put(key, data)
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        (**self).list(prefix)
    }
    fn list_with_times(&self, prefix: &str) -> StorageResult<Vec<(String, u64, Option<i64>)>> {
        (**self).list_with_times(prefix)
    }
    fn replace(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        (**self).replace(key, data)
    }
    fn delete(&self, key: &str) -> StorageResult<()> {
        (**self).delete(key)
    }
    fn put_exact_owned(&self, key: &str, data: Vec<u8>) -> StorageResult<()> {
        (**self).put_exact_owned(key, data)
    }
    fn remove_partial_writes(&self, written_before_ms: Option<i64>) -> StorageResult<u64> {
        (**self).remove_partial_writes(written_before_ms)
    }
}

/// A storage held in memory: for tests, and for the browser build once files are loaded.
///
/// It has a clock of its own (milliseconds, 0 until set) that stamps every object written, as a
/// filesystem or object store does: tests move it to age locks deterministically.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    written: Mutex<BTreeMap<String, i64>>,
    clock_ms: std::sync::atomic::AtomicI64,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace (or create) an object directly, bypassing the create-only rule; tests use it
    /// to damage a repository on purpose.
    pub fn overwrite(&self, key: &str, data: Vec<u8>) {
        self.lock().insert(key.to_string(), data);
        self.stamp(key);
    }

    /// Set the storage's clock (milliseconds since the Unix epoch); later writes carry it.
    pub fn set_clock(&self, ms: i64) {
        self.clock_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Move the storage's clock forward by `ms` milliseconds.
    pub fn advance_clock(&self, ms: i64) {
        self.clock_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    fn stamp(&self, key: &str) {
        let now = self.clock_ms.load(std::sync::atomic::Ordering::SeqCst);
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), now);
    }

    /// A store holding exactly these objects (a copy of another store, say).
    pub fn from_objects(objects: BTreeMap<String, Vec<u8>>) -> Self {
        MemoryStorage {
            objects: Mutex::new(objects),
            ..Default::default()
        }
    }

    /// A copy of every object, for inspection in tests.
    pub fn snapshot_objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A poisoned map is still consistent: every operation on it is a single insert/remove.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        self.lock()
            .get(key)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(key.to_string()))
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        let objects = self.lock();
        let data = objects
            .get(key)
            .ok_or_else(|| StorageError::NotFound(key.to_string()))?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start
            .saturating_add(usize::try_from(length).unwrap_or(usize::MAX))
            .min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        let mut objects = self.lock();
        if objects.contains_key(key) {
            return Err(StorageError::AlreadyExists(key.to_string()));
        }
        objects.insert(key.to_string(), data.to_vec());
        self.stamp(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        Ok(self
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    fn list_with_times(&self, prefix: &str) -> StorageResult<Vec<(String, u64, Option<i64>)>> {
        let listed = self.list(prefix)?;
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        Ok(listed
            .into_iter()
            .map(|(k, s)| {
                let t = written.get(&k).copied().unwrap_or(0);
                (k, s, Some(t))
            })
            .collect())
    }

    fn replace(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        self.overwrite(key, data.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> StorageResult<()> {
        self.lock()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound(key.to_string()))
    }
}

/// A storage that dies part-way: after `budget` changes (puts and deletes, each atomic as the
/// [`Storage`] contract requires) every further operation fails, as if the process had been
/// killed. What the inner storage holds then is what a restarted process finds. The fault
/// harness sweeps the budget over every change an operation makes.
#[derive(Debug)]
pub struct CrashingStorage<S> {
    inner: S,
    budget: u64,
    changes: std::sync::atomic::AtomicU64,
}

impl<S> CrashingStorage<S> {
    /// Allow `budget` changes, then crash (`u64::MAX`: never, to count an operation's changes).
    pub fn new(inner: S, budget: u64) -> Self {
        CrashingStorage {
            inner,
            budget,
            changes: Default::default(),
        }
    }

    /// Changes attempted so far (including the one that crashed).
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the simulated crash has happened.
    pub fn crashed(&self) -> bool {
        self.changes() > self.budget
    }

    /// The storage underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn dead(&self, key: &str) -> StorageResult<()> {
        if self.crashed() {
            Err(StorageError::Backend {
                key: key.to_string(),
                message: "simulated crash".into(),
            })
        } else {
            Ok(())
        }
    }

    fn change(&self, key: &str) -> StorageResult<()> {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.dead(key)
    }
}

impl<S: Storage> Storage for CrashingStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        self.dead(key)?;
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        self.dead(key)?;
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        self.change(key)?;
        self.inner.put(key, data)
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        self.dead(prefix)?;
        self.inner.list(prefix)
    }
    fn list_with_times(&self, prefix: &str) -> StorageResult<Vec<(String, u64, Option<i64>)>> {
        self.dead(prefix)?;
        self.inner.list_with_times(prefix)
    }
    fn replace(&self, key: &str, data: &[u8]) -> StorageResult<()> {
        self.change(key)?;
        self.inner.replace(key, data)
    }
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.change(key)?;
        self.inner.delete(key)
    }
}

/// Whether a backend may write `key` in the background, after `put` returned: pack and `.idx`
/// files, which only objects written later (index files, manifests) refer to. A backend that
/// does must make every write or delete for which [`waits_for_background`] holds wait until
/// those writes are durable, and report their first error there.
pub fn may_write_in_background(key: &str) -> bool {
    key.starts_with(crate::layout::PACK_DATA_PREFIX)
        && (key.ends_with(".pack") || key.ends_with(".idx"))
}

/// Whether a write or delete of `key` must first wait for background writes (see
/// [`may_write_in_background`]): all but lock files, which refer to nothing and are renewed
/// from a timer thread — that thread must neither wait for an operation's writes nor take
/// their errors away from it.
pub fn waits_for_background(key: &str) -> bool {
    !key.starts_with(crate::layout::LOCK_PREFIX)
}

/// Store an object that must have exactly these bytes: if the key is taken by other (damaged)
/// bytes, or by an object that cannot be read (an I/O error), replace them; identical bytes
/// already there are left alone.
pub fn put_exact(storage: &dyn Storage, key: &str, data: &[u8]) -> StorageResult<()> {
    exact_put(storage, key, data)
}

fn exact_put<S: Storage + ?Sized>(storage: &S, key: &str, data: &[u8]) -> StorageResult<()> {
    match storage.put(key, data) {
        Err(StorageError::AlreadyExists(_)) => match storage.get(key) {
            Ok(there) if there == data => Ok(()),
            // Archived: readable once restored from the archive, not damage.
            Err(e @ StorageError::Archived { .. }) => Err(e),
            // Other bytes, or bytes that cannot be read: damage, replaced.
            _ => {
                match storage.delete(key) {
                    Ok(()) | Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                storage.put(key, data)
            }
        },
        other => other,
    }
}
