//! Advisory locks under `locks/`.
//!
//! ```text
//! locks/<random id>.lock = "CA-LOCK1" ‖ seal("ca lock", JSON LockInfo)
//! ```
//! Any number of shared locks (ingest) may coexist; an exclusive lock (prune, repair) excludes
//! every other lock. A taker writes its lock first, then reads every lock, and withdraws if a
//! conflicting live lock is there (two takers racing both see each other; both withdraw).
//!
//! **Staleness never trusts a host's clock.** A holder renews its lock by writing a new file
//! (and removing the old one); a lock is stale when the *storage* wrote its file longer ago
//! than the policy's limit, measured against the time the storage gave the observer's own,
//! just-written lock file — both times come from one clock, the storage's, so skew between
//! hosts (of any size) cannot make a live lock look old. The only other way a lock is stale is
//! its holder being known gone (the caller's judgement: same host, same boot, process gone).
//! A lock that is listed but cannot be read (not yet readable, damaged) blocks like an
//! exclusive lock until it is stale by the same rule. Locks keep honest processes apart; they
//! are not what keeps snapshots complete: that is the commit check of an ingest and the
//! deletion notices of prune (docs/RELIABILITY.md).

pub use crate::layout::{LOCK_MAGIC, LOCK_PREFIX};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::crypto::{random_bytes, Keys, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::layout::{self, Kind};
use crate::storage::{Storage, StorageError};

/// Seal label of lock files.
pub const LOCK_LABEL: &[u8] = b"ca lock";
/// Default age (storage clock) after which a lock that was not renewed is stale: 30 minutes.
pub const DEFAULT_STALE_AFTER_MS: i64 = 30 * 60 * 1000;
/// Attempts at removing a lock before its removal is reported as failed.
const RELEASE_ATTEMPTS: usize = 3;

/// Who holds a lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Host name of the holder.
    pub hostname: String,
    /// Process id of the holder on that host.
    pub pid: u32,
    /// When the lock was taken (RFC 3339, by the holder's clock: shown, never compared).
    pub created_at: String,
    /// When the holder last renewed it (RFC 3339, holder's clock; informative only).
    #[serde(default)]
    pub refreshed_at: String,
    /// Whether the lock excludes all others.
    pub exclusive: bool,
    /// What the holder is doing (`ingest`, `prune`…).
    pub operation: String,
    /// What identifies the holder's process beyond host and pid (boot id, pid namespace,
    /// process start time), so that a liveness check on "the same host" cannot mistake another
    /// container's process, or a reused pid, for the holder. Empty in older locks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub process: String,
}

/// When a lock is stale.
pub struct LockPolicy<'a> {
    /// A lock whose file the storage wrote longer ago than this (milliseconds, storage clock)
    /// is stale: its holder stopped renewing it.
    pub stale_after_ms: i64,
    /// Whether the holder is known to be gone (e.g. same host and boot, process not running).
    pub holder_gone: &'a dyn Fn(&LockInfo) -> bool,
}

fn nobody_gone(_: &LockInfo) -> bool {
    false
}

impl LockPolicy<'static> {
    /// Locks never go stale (tests; storages without times).
    pub const NEVER: LockPolicy<'static> = LockPolicy {
        stale_after_ms: i64::MAX,
        holder_gone: &nobody_gone,
    };
}

/// How callers pass the staleness policy.
pub type StaleCheck<'a> = &'a LockPolicy<'a>;

/// One lock as observed in storage.
#[derive(Debug, Clone)]
pub struct LockState {
    /// Its storage key.
    pub key: String,
    /// Its content, `None` if it could not be read (listed but missing, damaged).
    pub info: Option<LockInfo>,
    /// Listed but not readable yet (an object store may list a new object before it serves
    /// it): it blocks like an exclusive lock. A lock that is there but damaged protects
    /// nothing and does not block (it cannot be a holder's intact lock).
    pub missing: bool,
    /// When the storage wrote it (ms since the epoch, storage clock), if the storage tells.
    pub written_ms: Option<i64>,
}

/// `ms` as `1h2m3s`.
pub fn format_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// How often a holder renews its locks for a stale age of `stale_after_ms`, in milliseconds:
/// six times per stale age, between one second and five minutes, so that a lock is renewed
/// several times before anyone may judge it stale by age. The caller's timer applies it.
pub fn refresh_interval_ms(stale_after_ms: i64) -> u64 {
    (stale_after_ms / 6).clamp(1_000, 300_000) as u64
}

impl LockPolicy<'_> {
    /// Why `lock` is stale, judged at storage time `now_ms`; `None` if it is live.
    pub fn stale_reason(&self, lock: &LockState, now_ms: Option<i64>) -> Option<String> {
        if lock.info.is_none() && !lock.missing {
            return Some("the lock file is damaged (it protects nothing)".into());
        }
        if let Some(info) = &lock.info {
            if (self.holder_gone)(info) {
                return Some(format!(
                    "its process {} on {} is gone",
                    info.pid, info.hostname
                ));
            }
        }
        match (lock.written_ms, now_ms) {
            (Some(w), Some(now)) if now.saturating_sub(w) > self.stale_after_ms => Some(format!(
                "not renewed for {} by the storage's clock (stale after {})",
                format_duration(now - w),
                format_duration(self.stale_after_ms)
            )),
            _ => None,
        }
    }

    /// A person's description of a live lock: who, what, since when, when it becomes stale.
    pub fn describe(&self, lock: &LockState, now_ms: Option<i64>) -> String {
        let who = match &lock.info {
            Some(i) => format!(
                "{} (pid {} on host {}, {} lock, taken {} by that host's clock)",
                i.operation,
                i.pid,
                i.hostname,
                if i.exclusive { "exclusive" } else { "shared" },
                i.created_at
            ),
            None if lock.missing => "a lock file that is listed but cannot be read (not yet, or not at all: `unlock --force` removes it)".to_string(),
            None => "a damaged lock file".to_string(),
        };
        let age = match (lock.written_ms, now_ms) {
            (Some(w), Some(now)) => {
                let age = now.saturating_sub(w);
                if self.stale_after_ms == i64::MAX {
                    format!("; last renewed {} ago", format_duration(age))
                } else {
                    format!(
                        "; last renewed {} ago by the storage's clock, stale if not renewed within {} more",
                        format_duration(age),
                        format_duration(self.stale_after_ms.saturating_sub(age))
                    )
                }
            }
            _ => String::new(),
        };
        format!("{who}{age}")
    }
}

fn parse_lock(keys: &Keys, data: &[u8]) -> Option<LockInfo> {
    data.strip_prefix(LOCK_MAGIC.as_slice())
        .and_then(|s| keys.open(LOCK_LABEL, s).ok())
        .and_then(|json| serde_json::from_slice::<LockInfo>(&json).ok())
}

/// Read every lock with its storage time. A lock that is listed but answers "not found" is
/// listed again: if it is still there it counts (as unreadable), if it is gone it was released.
pub fn read_locks(storage: &dyn Storage, keys: &Keys) -> Result<Vec<LockState>> {
    let mut out = Vec::new();
    let mut vanished = Vec::new();
    for (key, _, written_ms) in storage.list_with_times(LOCK_PREFIX)? {
        if !layout::is(Kind::Lock, &key) {
            continue; // another program's file: not a lock of ours, never removed
        }
        match storage.get(&key) {
            // A lock-named file without the lock magic is not ours either.
            Ok(data) if !layout::has_magic(Kind::Lock, &data) => {}
            Ok(data) => out.push(LockState {
                info: parse_lock(keys, &data),
                key,
                written_ms,
                missing: false,
            }),
            Err(StorageError::NotFound(_)) => vanished.push((key, written_ms)),
            Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
            // Cannot be read (an I/O error, which may pass; a FIFO or directory in its place):
            // as a lock that is listed but not served, it counts, holder unknown. It blocks
            // until stale by its storage time, and `unlock --force` removes it. (Judged damaged
            // instead, a live lock read through a failing network would be removed.)
            Err(_) => out.push(LockState {
                info: None,
                key,
                written_ms,
                missing: true,
            }),
        }
    }
    if !vanished.is_empty() {
        let again: std::collections::HashSet<String> = storage
            .list(LOCK_PREFIX)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for (key, written_ms) in vanished {
            if again.contains(&key) {
                out.push(LockState {
                    key,
                    info: None,
                    written_ms,
                    missing: true,
                });
            }
        }
    }
    Ok(out)
}

/// The storage's "now": the time it gave our own lock file `own`.
fn storage_now(locks: &[LockState], own: &str) -> Option<i64> {
    locks
        .iter()
        .find(|l| l.key == own)
        .and_then(|l| l.written_ms)
}

/// The first live lock that conflicts with ours (`own`), as a `Locked` error.
fn conflict(
    storage: &dyn Storage,
    keys: &Keys,
    exclusive: bool,
    own: &str,
    policy: StaleCheck<'_>,
) -> Result<Option<Error>> {
    let locks = read_locks(storage, keys)?;
    let now = storage_now(&locks, own);
    for lock in &locks {
        if lock.key == own {
            continue;
        }
        let other_exclusive = lock.info.as_ref().is_none_or(|i| i.exclusive);
        if (exclusive || other_exclusive) && policy.stale_reason(lock, now).is_none() {
            return Ok(Some(Error::Locked {
                lock: lock.key.clone(),
                holder: policy.describe(lock, now),
            }));
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
    policy: StaleCheck<'_>,
) -> Result<String> {
    let key = write_lock(storage, keys, info, rng)?;
    match conflict(storage, keys, info.exclusive, &key, policy) {
        Ok(None) => Ok(key),
        Ok(Some(e)) | Err(e) => {
            release(storage, &key)?;
            Err(e)
        }
    }
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

/// What `unlock` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnlockReport {
    /// Locks removed, each with why it could go.
    pub removed: Vec<(String, String)>,
    /// Locks left in place, each with who holds it and when it becomes stale.
    pub kept: Vec<(String, String)>,
    /// Whether a lock was removed without its holder being known gone (too old, or
    /// `--force`): that holder may be paused rather than dead, and may still write.
    #[serde(skip)]
    pub aged_out: bool,
}

/// Remove locks: every lock with `force`, otherwise stale ones; never `own` (the caller's
/// own lock, whose storage time is the "now" ages are measured against).
pub fn remove_locks(
    storage: &dyn Storage,
    keys: &Keys,
    force: bool,
    policy: StaleCheck<'_>,
    own: &str,
) -> Result<UnlockReport> {
    let locks = read_locks(storage, keys)?;
    let now = storage_now(&locks, own);
    let mut report = UnlockReport::default();
    for lock in &locks {
        if lock.key == own {
            continue;
        }
        let gone = lock.info.as_ref().is_some_and(|i| (policy.holder_gone)(i));
        let why = match policy.stale_reason(lock, now) {
            Some(why) => Some(why),
            None if force => Some("removed by --force while not stale".to_string()),
            None => None,
        };
        match why {
            Some(why) => {
                release(storage, &lock.key)?;
                report.aged_out |= !gone;
                report.removed.push((
                    lock.key.clone(),
                    format!("{why}; it was {}", policy.describe(lock, now)),
                ));
            }
            None => report
                .kept
                .push((lock.key.clone(), policy.describe(lock, now))),
        }
    }
    report.removed.sort();
    report.kept.sort();
    Ok(report)
}

/// Remove a lock (retrying: a lock left behind blocks other hosts until it is stale).
pub fn release(storage: &dyn Storage, key: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..RELEASE_ATTEMPTS {
        match storage.delete(key) {
            Ok(()) | Err(StorageError::NotFound(_)) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt").into())
}

/// A lock held by an operation, renewable from another thread while the operation works.
#[derive(Debug)]
pub struct HeldLock {
    state: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    key: Option<String>,
    info: LockInfo,
    /// Set when a renewal found the previous file gone: someone removed our lock.
    lost: bool,
    /// Earlier files of this lock that a renewal could not remove (removed at release).
    stale_files: Vec<String>,
}

impl HeldLock {
    /// Our lock `key`, written for `info`.
    pub fn new(key: String, info: LockInfo) -> Self {
        HeldLock {
            state: Mutex::new(Held {
                key: Some(key),
                info,
                lost: false,
                stale_files: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock's current storage key (`None` once released).
    pub fn key(&self) -> Option<String> {
        self.state().key.clone()
    }

    /// Whether another process removed this lock while we held it (found at a renewal).
    pub fn lost(&self) -> bool {
        self.state().lost
    }

    /// Renew: write a new lock file (the storage stamps it with its own time), then remove the
    /// old one. `now` is the holder's clock, recorded for people only.
    pub fn refresh(
        &self,
        storage: &dyn Storage,
        keys: &Keys,
        now: &str,
        rng: &mut dyn RandomSource,
    ) -> Result<()> {
        let mut held = self.state();
        let Some(old) = held.key.clone() else {
            return Ok(());
        };
        held.info.refreshed_at = now.to_string();
        let new = write_lock(storage, keys, &held.info, rng)?;
        held.key = Some(new);
        match storage.delete(&old) {
            Ok(()) => Ok(()),
            Err(StorageError::NotFound(_)) => {
                held.lost = true;
                Ok(())
            }
            // The new file keeps us locked; the old one is removed again at release.
            Err(e) => {
                held.stale_files.push(old);
                Err(e.into())
            }
        }
    }

    /// Remove the lock (retrying); an error names the lock file left behind.
    pub fn release(&self, storage: &dyn Storage) -> Result<()> {
        let (key, stale) = {
            let mut held = self.state();
            (held.key.take(), std::mem::take(&mut held.stale_files))
        };
        let mut result = Ok(());
        for k in key.iter().chain(&stale) {
            if let Err(e) = release(storage, k) {
                result = result.and(Err(e));
            }
        }
        result
    }
}
