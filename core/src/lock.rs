//! Advisory locks under `locks/`.
//!
//! ```text
//! locks/<random id>.lock = "CA-LOCK1" ‖ seal("ca lock", JSON LockInfo)
//! ```
//! Any number of shared locks (ingest) may coexist; an exclusive lock (prune, repair) excludes
//! every other lock. A writer first checks for conflicts, then writes its lock, then checks
//! again, and withdraws if a conflicting lock appeared meanwhile. Whether a lock is stale (its
//! process died) is for the caller to judge: the core cannot see processes.

use serde::{Deserialize, Serialize};

use crate::crypto::{random_bytes, Keys, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::storage::{Storage, StorageError};

/// Magic at the start of every lock file.
pub const LOCK_MAGIC: &[u8; 8] = b"CA-LOCK1";
/// Seal label of lock files.
pub const LOCK_LABEL: &[u8] = b"ca lock";
/// Prefix of lock files.
pub const LOCK_PREFIX: &str = "locks/";

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Host name of the holder.
    pub hostname: String,
    /// Process id of the holder on that host.
    pub pid: u32,
    /// When the lock was taken (RFC 3339).
    pub created_at: String,
    /// When the holder last renewed it (RFC 3339); a lock not renewed for long is stale.
    #[serde(default)]
    pub refreshed_at: String,
    /// Whether the lock excludes all others.
    pub exclusive: bool,
    /// What the holder is doing (`ingest`, `prune`…).
    pub operation: String,
}

impl LockInfo {
    fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, {} lock since {})",
            self.operation,
            self.pid,
            self.hostname,
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.created_at
        )
    }
}

/// Decides whether a lock's holder is gone.
pub type StaleCheck<'a> = &'a dyn Fn(&LockInfo) -> bool;

/// Read every lock; unreadable lock files are returned as `None` (they protect nothing).
pub fn read_locks(storage: &dyn Storage, keys: &Keys) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for (key, _) in storage.list(LOCK_PREFIX)? {
        let data = match storage.get(&key) {
            Ok(d) => d,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let info = data
            .strip_prefix(LOCK_MAGIC.as_slice())
            .and_then(|s| keys.open(LOCK_LABEL, s).ok())
            .and_then(|json| serde_json::from_slice::<LockInfo>(&json).ok());
        out.push((key, info));
    }
    Ok(out)
}

fn conflict(
    storage: &dyn Storage,
    keys: &Keys,
    exclusive: bool,
    own: Option<&str>,
    is_stale: StaleCheck<'_>,
) -> Result<Option<Error>> {
    for (key, info) in read_locks(storage, keys)? {
        if Some(key.as_str()) == own {
            continue;
        }
        if let Some(info) = info {
            if (exclusive || info.exclusive) && !is_stale(&info) {
                return Ok(Some(Error::Locked {
                    lock: key,
                    holder: info.describe(),
                }));
            }
        }
    }
    Ok(None)
}

/// Take a lock; returns its storage key, to be passed to [`release`].
pub fn acquire(
    storage: &dyn Storage,
    keys: &Keys,
    info: &LockInfo,
    rng: &mut dyn RandomSource,
    is_stale: StaleCheck<'_>,
) -> Result<String> {
    if let Some(e) = conflict(storage, keys, info.exclusive, None, is_stale)? {
        return Err(e);
    }
    let key = write_lock(storage, keys, info, rng)?;
    if let Some(e) = conflict(storage, keys, info.exclusive, Some(&key), is_stale)? {
        release(storage, &key)?;
        return Err(e);
    }
    Ok(key)
}

/// Store a lock file for `info` under a new random name; returns its key.
pub fn write_lock(
    storage: &dyn Storage,
    keys: &Keys,
    info: &LockInfo,
    rng: &mut dyn RandomSource,
) -> Result<String> {
    let key = format!("{LOCK_PREFIX}{}.lock", Id(random_bytes(rng)).to_hex());
    let json = serde_json::to_vec(info).expect("lock info serializes");
    let mut data = LOCK_MAGIC.to_vec();
    data.extend_from_slice(&keys.seal(LOCK_LABEL, &json, random_bytes(rng)));
    storage.put(&key, &data)?;
    Ok(key)
}

/// Renew a lock: write it again with `refreshed_at = now`, then remove the old file.
pub fn refresh(
    storage: &dyn Storage,
    keys: &Keys,
    old_key: &str,
    info: &mut LockInfo,
    now: &str,
    rng: &mut dyn RandomSource,
) -> Result<String> {
    info.refreshed_at = now.to_string();
    let key = write_lock(storage, keys, info, rng)?;
    release(storage, old_key)?;
    Ok(key)
}

/// Remove locks: every lock with `force`, otherwise stale and unreadable ones, never `keep`
/// (the caller's own). Returns the keys removed.
pub fn remove_locks(
    storage: &dyn Storage,
    keys: &Keys,
    force: bool,
    is_stale: StaleCheck<'_>,
    keep: Option<&str>,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (key, info) in read_locks(storage, keys)? {
        if Some(key.as_str()) != keep && (force || info.as_ref().is_none_or(is_stale)) {
            release(storage, &key)?;
            removed.push(key);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Remove a lock taken with [`acquire`].
pub fn release(storage: &dyn Storage, key: &str) -> Result<()> {
    match storage.delete(key) {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
