//! What the exclusive operations (reindex, repair, prune) share, and the parity upkeep ingest
//! shares with them: taking the exclusive lock and clearing what dead writers left (stale
//! locks, temporary files, finished deletion notices, pending manifests), rebuilding the index
//! from the packs, writing index files, and grouping packs under parity.
//!
//! Every step orders its writes so that a crash at any point leaves a repository that
//! verifies: new objects are written before the objects they replace are deleted, and nothing a
//! remaining snapshot needs is ever deleted. No operation lives here; operations call these.

use std::collections::HashSet;

use serde::Serialize;

use crate::crypto::{random_bytes, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{encode_index_file, index_key, IndexedPack, INDEX_PREFIX};
use crate::layout::{self, Kind};
use crate::lock::{remove_locks, HeldLock, LockInfo, StaleCheck, LOCK_PREFIX};
use crate::notice::NOTICE_PREFIX;
use crate::pack::{decode_idx, encode_idx, idx_key, pack_key, read_header_from_storage};
use crate::parity::{Group, ParityBuilder, GROUP_SIZE};
use crate::repo::Repository;
use crate::scan::{list_packs, read_chunk_list, read_index_view, IndexView};
use crate::snapshot::{decode_snapshot, pending_id_of_key, snapshot_key, Snapshot, PENDING_PREFIX};
use crate::storage::{put_exact, Storage, StorageError};

/// Packs listed per index file written by reindex and prune.
pub(crate) const PACKS_PER_REBUILT_INDEX_FILE: usize = 256;

/// What reindex did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReindexReport {
    /// Packs in the new index.
    pub packs_indexed: u64,
    /// Packs whose `.idx` was missing or damaged and was rewritten from the pack's header.
    pub idx_rebuilt: Vec<Id>,
    /// Packs whose entries could not be read at all (left out of the index).
    pub unreadable_packs: Vec<Id>,
    /// Index files written.
    pub index_files_written: u64,
    /// Old index files removed.
    pub index_files_removed: u64,
}

pub(crate) fn delete_if_present(storage: &dyn Storage, key: &str) -> Result<u64> {
    match storage.delete(key) {
        Ok(()) => Ok(1),
        Err(StorageError::NotFound(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// What an operation under the exclusive lock gets: the lock, and the stale locks removed.
pub(crate) struct Exclusive {
    pub(crate) lock: std::sync::Arc<HeldLock>,
    pub(crate) locks_removed: Vec<String>,
}

impl<S: Storage> Repository<S> {
    pub(crate) fn with_exclusive<T>(
        &self,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
        f: impl FnOnce(&mut dyn RandomSource, &Exclusive) -> Result<T>,
    ) -> Result<T> {
        let mut info = info.clone();
        info.exclusive = true;
        let held = self.lock(&info, rng, is_stale)?;
        // No live writer is left now (as far as locks tell): what interrupted ones left is
        // garbage, and so are the locks of processes that died.
        let result = self
            .remove_leftovers(&held, is_stale)
            .and_then(|locks_removed| {
                f(
                    rng,
                    &Exclusive {
                        lock: held.clone(),
                        locks_removed,
                    },
                )
            });
        self.forget_index();
        let released = self.unlock(&held);
        let value = result?;
        released?;
        Ok(value)
    }

    /// Under the exclusive lock `own`: remove stale locks, dead writers' temporary files,
    /// finished deletion notices, and settle pending manifests (see
    /// [`Repository::settle_pending_manifests`]). Returns the locks removed.
    pub(crate) fn remove_leftovers(
        &self,
        own: &HeldLock,
        is_stale: StaleCheck<'_>,
    ) -> Result<Vec<String>> {
        let storage = self.storage();
        let own_key = own.key().unwrap_or_default();
        let now = storage
            .list_with_times(LOCK_PREFIX)?
            .into_iter()
            .find(|(k, _, _)| *k == own_key)
            .and_then(|(_, _, t)| t);
        let report = remove_locks(storage, self.keys(), false, is_stale, &own_key)?;
        // Temporary files: all of them when every other holder is known gone; when a lock was
        // only too old (its holder may be paused, and write again), just those older than the
        // stale age.
        let margin = match (report.aged_out, now) {
            (false, _) => None,
            (true, Some(n)) => Some(n.saturating_sub(is_stale.stale_after_ms)),
            (true, None) => Some(i64::MIN),
        };
        storage.remove_partial_writes(margin)?;
        self.remove_finished_notices()?;
        self.settle_pending_manifests(now, is_stale)?;
        Ok(report.removed.into_iter().map(|(k, _)| k).collect())
    }

    /// Pending manifests: one whose snapshot is committed is removed; one older than the stale
    /// age (its ingest died between writing it and committing, or is paused there) is
    /// committed if every pack it needs is present and announced by no notice — its data was
    /// complete, and its ingest, should it resume, writes the same bytes — and removed if not
    /// (its ingest, resuming, fails its own check). A pending manifest is never removed while
    /// the data it needs might be deleted: prune keeps it.
    fn settle_pending_manifests(&self, now: Option<i64>, is_stale: StaleCheck<'_>) -> Result<()> {
        let storage = self.storage();
        let listed = storage.list_with_times(PENDING_PREFIX)?;
        if listed.is_empty() {
            return Ok(());
        }
        let committed: HashSet<Id> = self.snapshot_ids()?.into_iter().collect();
        let mut view = None;
        for (key, _, written) in listed {
            let Some(id) = pending_id_of_key(&key) else {
                continue;
            };
            if committed.contains(&id) {
                delete_if_present(storage, &key)?;
                continue;
            }
            let old = matches!((now, written), (Some(n), Some(w)) if n.saturating_sub(w) > is_stale.stale_after_ms);
            if !old {
                continue;
            }
            let data = match storage.get(&key) {
                Ok(d) => d,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(snap) = decode_snapshot(self.keys(), id, &data) else {
                // Damaged: removed only when recognisably ours (a foreign file is left alone).
                if layout::has_magic(Kind::PendingSnapshot, &data) {
                    delete_if_present(storage, &key)?;
                }
                continue;
            };
            if view.is_none() {
                view = Some(read_index_view(storage, self.keys(), |_, _| {})?.0);
            }
            let view = view.as_ref().expect("just read");
            let complete = self
                .packs_of(view, &snap)
                .and_then(|packs| crate::notice::check_packs_present(storage, self.keys(), &packs));
            match complete {
                Ok(()) => {
                    put_exact(storage, &snapshot_key(&id), &data)?;
                    if self.copies() {
                        put_exact(storage, &crate::snapshot::snapshot_copy_key(&id), &data)?;
                    }
                    delete_if_present(storage, &key)?;
                }
                Err(Error::Storage(e)) => return Err(e.into()),
                Err(_) => {
                    delete_if_present(storage, &key)?;
                }
            }
        }
        Ok(())
    }

    /// Every pack holding a blob `snap` references (chunk lists included).
    fn packs_of(&self, view: &IndexView, snap: &Snapshot) -> Result<HashSet<Id>> {
        let mut packs = HashSet::new();
        for item in &snap.manifest.items {
            for list in &item.chunk_lists {
                let mut ids = read_chunk_list(self.storage(), self.keys(), view, list)?;
                ids.push(*list);
                for id in ids {
                    let loc = view.blobs.get(&id).ok_or_else(|| {
                        Error::corruption(format!("chunk {id}"), "in no index file")
                    })?;
                    packs.insert(loc.pack);
                }
            }
        }
        Ok(packs)
    }

    pub(crate) fn write_index_files(
        &self,
        packs: &[IndexedPack],
        rng: &mut dyn RandomSource,
    ) -> Result<(Vec<String>, u64)> {
        let mut keys = Vec::new();
        let mut bytes = 0;
        for batch in packs.chunks(PACKS_PER_REBUILT_INDEX_FILE) {
            let data = encode_index_file(self.keys(), batch, random_bytes(rng));
            let key = index_key(&Id::sha256(&data));
            match self.storage().put(&key, &data) {
                Ok(()) | Err(StorageError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            bytes += data.len() as u64;
            keys.push(key);
        }
        Ok((keys, bytes))
    }

    /// Rebuild the global index from the `.idx` files, and from the packs' own headers where
    /// an `.idx` is missing or damaged (rewriting that `.idx`), then remove the old index
    /// files. Runs under the exclusive lock (reindex, and repair's index step).
    pub(crate) fn rebuild_index(&self, rng: &mut dyn RandomSource) -> Result<ReindexReport> {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        // Old index files are listed before the packs, so every pack they name is seen below.
        let old: Vec<String> = layout::only(Kind::Index, storage.list(INDEX_PREFIX)?)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let (present, idx_present) = list_packs(storage)?;
        let mut report = ReindexReport::default();
        let mut packs = Vec::new();
        let mut ids: Vec<(&Id, &u64)> = present.iter().collect();
        ids.sort();
        for (id, size) in ids {
            self.check_interrupt()?;
            let key = idx_key(id);
            let from_idx = if idx_present.contains(id) {
                storage
                    .get(&key)
                    .ok()
                    .and_then(|d| decode_idx(keys, &key, &d).ok())
                    .filter(|(pid, psize, _)| pid == id && psize == size)
                    .map(|(_, _, entries)| entries)
            } else {
                None
            };
            let entries = match from_idx {
                Some(e) => e,
                None => match read_header_from_storage(storage, keys, id, *size) {
                    Ok(entries) => {
                        put_exact(
                            storage,
                            &key,
                            &encode_idx(keys, id, *size, &entries, random_bytes(rng)),
                        )?;
                        report.idx_rebuilt.push(*id);
                        entries
                    }
                    // In an archive class: intact, but not readable until restored.
                    Err(e @ Error::Storage(StorageError::Archived { .. })) => return Err(e),
                    Err(_) => {
                        report.unreadable_packs.push(*id);
                        continue;
                    }
                },
            };
            packs.push(IndexedPack {
                id: *id,
                size: *size,
                entries,
            });
        }
        let (written, _) = self.write_index_files(&packs, rng)?;
        report.index_files_written = written.len() as u64;
        for key in old.iter().filter(|k| !written.contains(k)) {
            // What the new files replace: every file named as an index file, damaged (a bad
            // magic, emptied) or not. Left in place, a damaged one would stop every command
            // that loads the index again.
            report.index_files_removed += delete_if_present(storage, key)?;
        }
        report.packs_indexed = packs.len() as u64;
        Ok(report)
    }

    /// Remove deletion notices none of whose packs exists any more (their prune finished its
    /// deletions, or a later prune did them). A notice naming a pack still there stays: that
    /// pack must not be reused, whoever wrote the notice and whether or not it still runs.
    pub(crate) fn remove_finished_notices(&self) -> Result<()> {
        let storage = self.storage();
        let listed = layout::only(Kind::Notice, storage.list(NOTICE_PREFIX)?);
        if listed.is_empty() {
            return Ok(());
        }
        let (present, _) = list_packs(storage)?;
        for (key, _) in listed {
            let data = match storage.get(&key) {
                Ok(d) => d,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if !layout::has_magic(Kind::Notice, &data) {
                continue; // not recognisably ours: left alone
            }
            // A damaged notice can name nothing: it goes too.
            let finished = crate::notice::parse_notice(self.keys(), &data).is_none_or(|n| {
                n.packs
                    .iter()
                    .filter_map(|h| Id::from_hex(h))
                    .all(|p| !present.contains_key(&p))
            });
            if finished {
                delete_if_present(storage, &key)?;
            }
        }
        Ok(())
    }

    /// Whether a group among `keys` (still stored) names a pack that is not in storage.
    fn some_member_missing(&self, keys: &HashSet<String>) -> Result<bool> {
        let storage = self.storage();
        let (present, _) = list_packs(storage)?;
        for key in keys {
            let data = match storage.get(key) {
                Ok(d) => d,
                Err(StorageError::NotFound(_)) => continue, // replaced since: not ours to check
                Err(e) => return Err(e.into()),
            };
            let desc = crate::parity::decode_group(self.keys(), key, &data)?;
            if desc.members.iter().any(|m| !present.contains_key(&m.pack)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replace every parity group (of `only`, if given) that names a missing pack by new groups
    /// over its surviving members that no intact group protects. Prune runs it after deleting,
    /// and an ingest on the groups it wrote: one of the two sees a group broken by the other.
    pub(crate) fn regroup_broken_groups(
        &self,
        only: Option<&HashSet<String>>,
        rng: &mut dyn RandomSource,
    ) -> Result<()> {
        let storage = self.storage();
        if let Some(keys) = only {
            // The common case costs reading the few groups an ingest wrote and one listing.
            if keys.is_empty() || !self.some_member_missing(keys)? {
                return Ok(());
            }
        }
        // An ingest (`only`) passes over descriptions in an archive class; prune does not.
        let (groups, _) = crate::parity::load_groups_with(storage, self.keys(), only.is_some())?;
        let (present, _) = list_packs(storage)?;
        let (broken, intact): (Vec<Group>, Vec<Group>) = groups.into_iter().partition(|g| {
            only.is_none_or(|keys| keys.contains(&g.key))
                && g.desc
                    .members
                    .iter()
                    .any(|m| !present.contains_key(&m.pack))
        });
        if broken.is_empty() {
            return Ok(());
        }
        let protected: HashSet<Id> = intact
            .iter()
            .flat_map(|g| g.desc.members.iter().map(|m| m.pack))
            .collect();
        let mut orphans: Vec<(Id, u64)> = Vec::new();
        for g in &broken {
            for m in &g.desc.members {
                if present.contains_key(&m.pack)
                    && !protected.contains(&m.pack)
                    && !orphans.iter().any(|(p, _)| *p == m.pack)
                {
                    orphans.push((m.pack, m.size));
                }
            }
        }
        protect_packs(storage, self.keys(), &orphans, rng)?;
        for g in &broken {
            crate::parity::remove_group(storage, g)?;
        }
        Ok(())
    }
}

/// Group `packs` (read from storage) into new parity groups of up to 20; returns groups written.
///
/// Each pack must hash to its id: parity computed over a damaged pack would make the damage
/// permanent (the group it leaves could have rebuilt it), so that is an error, before any
/// group is written for its batch.
///
/// # Errors
/// [`Error::Corruption`](crate::Error::Corruption) naming a pack that is empty, does not hash
/// to its id or cannot be read; [`Error::Storage`](crate::Error::Storage).
pub(crate) fn protect_packs(
    storage: &dyn Storage,
    keys: &crate::crypto::Keys,
    packs: &[(Id, u64)],
    rng: &mut dyn RandomSource,
) -> Result<u64> {
    let mut written = 0;
    for batch in packs.chunks(GROUP_SIZE) {
        let mut b = ParityBuilder::new();
        for (id, _) in batch {
            let damaged = |why: String| {
                crate::Error::corruption(
                    format!("pack {id}"),
                    format!(
                        "{why}: no parity is computed over it; `repair` rebuilds it from its \
                         parity group (run it, then this command again)"
                    ),
                )
            };
            let data = match storage.get(&pack_key(id)) {
                Ok(d) => d,
                Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
                Err(StorageError::NotFound(_)) => return Err(damaged("missing".into())),
                Err(e) => return Err(damaged(format!("cannot be read ({e})"))),
            };
            if data.is_empty() {
                return Err(damaged("empty".into()));
            }
            if b.add_hashing(&data) != *id {
                return Err(damaged("does not hash to its id (damaged)".into()));
            }
        }
        b.store(storage, keys, random_bytes(rng))?;
        written += 1;
    }
    Ok(written)
}
