//! Deletion notices and the commit check: how prune and ingest keep every committed snapshot
//! complete without trusting locks or clocks.
//!
//! ```text
//! deleting/<random id>.notice = "CA-DEL01" ‖ seal("ca deleting", JSON Notice)
//! ```
//! Prune announces the packs it is about to delete in a notice *before* it looks, one last
//! time, for snapshots written since it planned, and deletes only after that look. An ingest
//! writes its manifest under `snapshots/pending/` first, then checks that every pack its
//! snapshot needs is still listed and named by no notice, and only then writes the manifest
//! under its final name. Storage operations are linearisable (a filesystem; S3 since 2020), so
//! either prune's last look sees the pending manifest (and keeps what it needs), or the ingest's
//! check comes after the notice (and the ingest commits nothing). No clock, lock or pause
//! enters the argument (docs/RELIABILITY.md).

pub use crate::layout::{NOTICE_MAGIC, NOTICE_PREFIX};
use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::crypto::{random_bytes, Keys, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::layout::{self, Kind};
use crate::pack::pack_key;
use crate::storage::{Storage, StorageError};

/// Seal label of notices.
pub const NOTICE_LABEL: &[u8] = b"ca deleting";

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The lock file of the prune that wrote it.
    pub lock: String,
    /// Packs (64 hex) that prune deletes.
    pub packs: Vec<String>,
}

/// Store a notice that the holder of `lock` is deleting `packs`; returns its key.
pub fn write_notice(
    storage: &dyn Storage,
    keys: &Keys,
    lock: &str,
    packs: &BTreeSet<Id>,
    rng: &mut dyn RandomSource,
) -> Result<String> {
    let notice = Notice {
        lock: lock.to_string(),
        packs: packs.iter().map(Id::to_hex).collect(),
    };
    let json = serde_json::to_vec(&notice).expect("notice serializes");
    let mut data = NOTICE_MAGIC.to_vec();
    data.extend_from_slice(&keys.seal(NOTICE_LABEL, &json, random_bytes(rng)));
    let key = format!("{NOTICE_PREFIX}{}.notice", Id(random_bytes(rng)).to_hex());
    storage.put(&key, &data)?;
    Ok(key)
}

/// Parse a stored notice.
pub fn parse_notice(keys: &Keys, data: &[u8]) -> Option<Notice> {
    data.strip_prefix(NOTICE_MAGIC.as_slice())
        .and_then(|s| keys.open(NOTICE_LABEL, s).ok())
        .and_then(|json| serde_json::from_slice::<Notice>(&json).ok())
}

/// Packs named by the notices in storage now.
#[derive(Debug, Default)]
pub struct Doomed {
    /// Packs some prune is deleting.
    pub packs: HashSet<Id>,
    /// Notices that could not be read (they might name any pack).
    pub unreadable: Vec<String>,
    /// Every notice key seen.
    pub notices: Vec<String>,
}

/// Read every notice (one listing; a notice gone between listing and reading was finished).
pub fn read_notices(storage: &dyn Storage, keys: &Keys) -> Result<Doomed> {
    let mut doomed = Doomed::default();
    for (key, _) in storage.list(NOTICE_PREFIX)? {
        if !layout::is(Kind::Notice, &key) {
            continue; // another program's file
        }
        let data = match storage.get(&key) {
            Ok(d) => d,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if !layout::has_magic(Kind::Notice, &data) {
            continue;
        }
        match parse_notice(keys, &data) {
            Some(n) => doomed
                .packs
                .extend(n.packs.iter().filter_map(|h| Id::from_hex(h))),
            None => doomed.unreadable.push(key.clone()),
        }
        doomed.notices.push(key);
    }
    Ok(doomed)
}

/// The commit check: every pack in `packs` is listed in storage and named by no deletion
/// notice. Costs one listing of `deleting/` (almost always empty) and one of `packs/data/`
/// (two keys per pack), never a pack read. The notices are listed before the packs: a prune
/// removes its notice only after deleting its packs, so one of the two listings sees it.
pub fn check_packs_present(storage: &dyn Storage, keys: &Keys, packs: &HashSet<Id>) -> Result<()> {
    if packs.is_empty() {
        return Ok(());
    }
    let doomed = read_notices(storage, keys)?;
    if let Some(n) = doomed.unreadable.first() {
        return Err(Error::ConcurrentModification {
            object: format!("deletion notice {n}"),
            reason: "it cannot be read, so any pack this snapshot needs may be being deleted; nothing was committed (run `repair`, then the backup again)".into(),
        });
    }
    let mut hit: Vec<&Id> = packs.iter().filter(|p| doomed.packs.contains(p)).collect();
    if !hit.is_empty() {
        hit.sort();
        return Err(Error::ConcurrentModification {
            object: format!("pack {}", hit[0]),
            reason: format!(
                "a prune running now is deleting {} pack(s) this snapshot needs; nothing was committed (run the backup again once the prune is done)",
                hit.len()
            ),
        });
    }
    let listed: HashSet<String> = storage
        .list(crate::layout::PACK_DATA_PREFIX)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut gone: Vec<&Id> = packs
        .iter()
        .filter(|p| !listed.contains(&pack_key(p)))
        .collect();
    if !gone.is_empty() {
        gone.sort();
        return Err(Error::ConcurrentModification {
            object: format!("pack {}", gone[0]),
            reason: format!(
                "{} pack(s) this snapshot needs were deleted while it was written (by a prune on another host, or by hand); nothing was committed (run the backup again)",
                gone.len()
            ),
        });
    }
    Ok(())
}
