//! Maintenance: reindex, repair, prune (with garbage collection) and lock removal.
//!
//! Every operation here runs under an exclusive lock and orders its writes so that a crash at
//! any point leaves a repository that verifies: new objects are written before the objects they
//! replace are deleted, and nothing that a remaining snapshot needs is ever deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::blob::{decode_blob, decode_chunk_list};
use crate::crypto::{random_bytes, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{
    encode_index_file, index_file_size, index_key, IndexedPack, Location, INDEX_PREFIX,
};
use crate::layout::{self, Kind};
use crate::lock::{remove_locks, HeldLock, LockInfo, StaleCheck, LOCK_PREFIX};
use crate::notice::{read_notices, write_notice, NOTICE_PREFIX};
use crate::pack::{
    decode_idx, encode_idx, idx_file_size, idx_key, pack_file_size, pack_key,
    read_header_from_storage, PackBuilder, PackEntry,
};
use crate::parity::{
    encode_group, load_groups, rebuild_member, Group, GroupDescription, Member, ParityBuilder,
    GROUP_SIZE, PARITY_SHARDS,
};
use crate::repo::{resolve_snapshot_prefix, Repository, SnapshotFilter};
use crate::retention::{apply_grouped, GroupBy, GroupDecision, Policy};
use crate::scan::{list_packs, read_index_view, IndexView};
use crate::snapshot::{
    decode_snapshot, pending_id_of_key, snapshot_id_of_key, snapshot_key, Snapshot, PENDING_PREFIX,
    SNAPSHOT_PREFIX,
};
use crate::storage::{put_exact, Storage, StorageError};

/// Packs listed per index file written by reindex and prune.
const PACKS_PER_INDEX_FILE: usize = 256;
/// Prune rewrites a pack when at least this percentage of its blob bytes is garbage (and
/// deletes it when all of it is).
pub const REWRITE_THRESHOLD_PERCENT: u64 = 20;
/// A pack is small when its file is under `pack_size / SMALL_PACK_DIVISOR`.
pub const SMALL_PACK_DIVISOR: u64 = 4;
/// Prune merges small packs into full-size ones once there are at least this many.
pub const MERGE_MIN_SMALL_PACKS: usize = 10;

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

/// A pack repair could not save, and the snapshots that need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unrecoverable {
    /// The pack.
    pub pack: Id,
    /// Why it could not be rebuilt.
    pub reason: String,
    /// Snapshots with chunks (or chunk lists) in it.
    pub snapshots: Vec<Id>,
}

/// What repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Whether the index was rebuilt from the packs.
    pub index_rebuilt: bool,
    /// Packs rebuilt byte-identical from parity.
    pub packs_repaired: Vec<Id>,
    /// Stale lock files removed.
    pub locks_removed: Vec<String>,
    /// Parity groups written anew (damaged parity, or packs that had none).
    pub groups_written: u64,
    /// What could not be saved.
    pub unrecoverable: Vec<Unrecoverable>,
    /// The reindex that repair ran.
    pub reindex: ReindexReport,
    /// Parity groups moved from `packs/parity/` to `parity/` (repositories made before the
    /// `parity-dir` feature).
    pub parity_groups_moved: u64,
    /// Files at the location that this repository did not write (left alone).
    pub foreign_files: Vec<String>,
}

/// What prune removes: `policy` applied to each group (`group_by`) of the snapshots `filter`
/// selects. `now` is the caller's clock (a snapshot dated after it is not the reference of the
/// `within` rules); `None` takes every snapshot as past.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// The rules.
    pub policy: Policy,
    /// How snapshots are grouped (default host and items).
    pub group_by: GroupBy,
    /// Which snapshots the policy applies to at all (others are kept).
    pub filter: SnapshotFilter,
    /// The caller's current time.
    pub now: Option<DateTime<FixedOffset>>,
}

impl Retention {
    /// `policy` over every snapshot, grouped by host and items.
    pub fn new(policy: Policy) -> Self {
        Retention {
            policy,
            ..Retention::default()
        }
    }
}

/// Which snapshots go: a retention policy's choice, or the ones named (forget).
enum Selection<'a> {
    Policy(&'a Retention),
    Snapshots(&'a [String]),
}

/// Move groups kept in `packs/parity/` (before the `parity-dir` feature) to `parity/`: the
/// shard is written first, then the description (the same bytes, so the same id), then the old
/// description and shard are deleted. A crash in between leaves two identical, valid groups.
fn move_legacy_groups(storage: &dyn Storage, groups: &[Group]) -> Result<u64> {
    let mut moved = 0;
    for g in groups
        .iter()
        .filter(|g| g.key.starts_with(layout::LEGACY_PARITY_PREFIX))
    {
        let data = storage.get(&g.key)?;
        let parity = storage.get(&g.parity_key())?;
        let id = layout::classify(&g.key).and_then(|(_, id)| id);
        let (Some(id), true) = (id, Id::sha256(&parity) == g.desc.parity) else {
            continue; // a damaged shard is not copied: the group is rebuilt instead
        };
        put_exact(storage, &crate::parity::parity_key(&g.desc.parity), &parity)?;
        put_exact(storage, &crate::parity::group_key(&id), &data)?;
        crate::parity::remove_group(storage, g)?;
        moved += 1;
    }
    Ok(moved)
}

/// What prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Snapshots the policy keeps (among those it applies to), newest first within each
    /// group, groups in order; empty for forget.
    pub kept: Vec<Id>,
    /// Snapshots removed, newest first.
    pub removed: Vec<Id>,
    /// Per group: what the policy keeps (and why) and removes; empty for forget.
    pub groups: Vec<GroupDecision>,
    /// Packs deleted (all garbage, rewritten, or left over by interrupted writers).
    pub removed_packs: u64,
    /// Packs whose live blobs were copied into new packs (those merged included).
    pub rewritten_packs: u64,
    /// Of those, small packs merged into full-size ones (see [`MERGE_MIN_SMALL_PACKS`]).
    pub merged_packs: u64,
    /// Packs written.
    pub new_packs: u64,
    /// Bytes the repository shrank by (negative if it grew).
    pub freed_bytes: i64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Files at the location that this repository did not write (left alone).
    pub foreign_files: Vec<String>,
}

fn delete_if_present(storage: &dyn Storage, key: &str) -> Result<u64> {
    match storage.delete(key) {
        Ok(()) => Ok(1),
        Err(StorageError::NotFound(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Sizes of objects a plan deletes and writes, for the freed-bytes figure.
#[derive(Default)]
struct Ledger {
    deleted: u64,
    written: u64,
}

impl Ledger {
    fn freed(&self) -> i64 {
        self.deleted as i64 - self.written as i64
    }
}

impl<S: Storage> Repository<S> {
    fn with_exclusive<T>(
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
    fn remove_leftovers(&self, own: &HeldLock, is_stale: StaleCheck<'_>) -> Result<Vec<String>> {
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
                let mut ids = self.read_list_blob(view, list)?;
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

    fn write_index_files(
        &self,
        packs: &[IndexedPack],
        rng: &mut dyn RandomSource,
    ) -> Result<(Vec<String>, u64)> {
        let mut keys = Vec::new();
        let mut bytes = 0;
        for batch in packs.chunks(PACKS_PER_INDEX_FILE) {
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
    /// an `.idx` is missing or damaged (rewriting that `.idx`). Takes an exclusive lock.
    pub fn reindex(
        &self,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<ReindexReport> {
        self.with_exclusive(info, rng, is_stale, |rng, _| self.reindex_locked(rng))
    }

    fn reindex_locked(&self, rng: &mut dyn RandomSource) -> Result<ReindexReport> {
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
            // What the new files replace: index files recognisably ours, damaged or not.
            if layout::owned(storage, key)? {
                report.index_files_removed += delete_if_present(storage, key)?;
            }
        }
        report.packs_indexed = packs.len() as u64;
        Ok(report)
    }

    /// Repair what can be repaired: remove stale locks, rebuild missing or damaged packs from
    /// their parity group, rewrite damaged parity, protect unprotected packs, rebuild the index,
    /// and name what could not be saved with the snapshots it affects.
    pub fn repair(
        &self,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<RepairReport> {
        self.with_exclusive(info, rng, is_stale, |rng, held| {
            let mut report = self.repair_locked(rng)?;
            report.locks_removed = held.locks_removed.clone();
            Ok(report)
        })
    }

    fn repair_locked(&self, rng: &mut dyn RandomSource) -> Result<RepairReport> {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let mut report = RepairReport::default();
        // What the index knew before, to name the blobs of packs that are gone.
        let (old_view, _) = read_index_view(storage, keys, |_, _| {})?;
        let (present, _) = list_packs(storage)?;
        let (groups, _) = load_groups(storage, keys)?;

        let mut intact: HashMap<Id, bool> = HashMap::new();
        let mut check = |id: &Id, size: u64| -> Result<bool> {
            if let Some(ok) = intact.get(id) {
                return Ok(*ok);
            }
            let ok = present.get(id) == Some(&size)
                && match storage.get(&pack_key(id)) {
                    Ok(d) => Id::sha256(&d) == *id,
                    Err(StorageError::NotFound(_)) => false,
                    Err(e) => return Err(e.into()),
                };
            intact.insert(*id, ok);
            Ok(ok)
        };
        let mut lost: BTreeMap<Id, String> = BTreeMap::new();
        let mut repaired = BTreeSet::new();
        for g in &groups {
            self.check_interrupt()?;
            let mut bad = Vec::new();
            for (i, m) in g.desc.members.iter().enumerate() {
                if !repaired.contains(&m.pack) && !check(&m.pack, m.size)? {
                    bad.push(i);
                }
            }
            let parity_ok = match storage.get(&g.parity_key()) {
                Ok(p) => Id::sha256(&p) == g.desc.parity,
                Err(StorageError::NotFound(_)) => false,
                Err(e) => return Err(e.into()),
            };
            match (bad.as_slice(), parity_ok) {
                ([], true) => {}
                ([], false) => {
                    // Members intact, parity damaged: compute it again.
                    let mut b = ParityBuilder::new();
                    for m in &g.desc.members {
                        b.add(m.pack, &storage.get(&pack_key(&m.pack))?);
                    }
                    b.replaces = Some(g.clone());
                    b.store(storage, keys, random_bytes(rng))?;
                    report.groups_written += 1;
                }
                ([one], true) => {
                    let m = g.desc.members[*one];
                    match rebuild_member(storage, g, *one) {
                        Ok(bytes) => {
                            put_exact(storage, &pack_key(&m.pack), &bytes)?;
                            repaired.insert(m.pack);
                            lost.remove(&m.pack);
                            report.packs_repaired.push(m.pack);
                        }
                        Err(e) => {
                            lost.entry(m.pack).or_insert_with(|| e.to_string());
                        }
                    }
                }
                (many, _) => {
                    let why = if parity_ok {
                        format!("{} packs of its parity group {} are lost or damaged; one parity shard rebuilds only one", many.len(), g.key)
                    } else {
                        format!(
                            "its parity group {} has a damaged or missing parity shard",
                            g.key
                        )
                    };
                    for i in many {
                        lost.entry(g.desc.members[*i].pack)
                            .or_insert_with(|| why.clone());
                    }
                }
            }
        }
        lost.retain(|id, _| !repaired.contains(id));

        // The index, from what is on storage now.
        report.reindex = self.reindex_locked(rng)?;
        report.index_rebuilt = true;

        // Indexed packs that no group protects (and that are intact) get a group.
        let (groups, bad_groups) = load_groups(storage, keys)?;
        let grouped: HashSet<Id> = groups
            .iter()
            .flat_map(|g| g.desc.members.iter().map(|m| m.pack))
            .collect();
        let (present, _) = list_packs(storage)?;
        let mut unprotected: Vec<(Id, u64)> = Vec::new();
        let mut sorted: Vec<(&Id, &u64)> = present.iter().collect();
        sorted.sort();
        for (id, size) in sorted {
            self.check_interrupt()?;
            if grouped.contains(id) || report.reindex.unreadable_packs.contains(id) {
                continue;
            }
            if check(id, *size)? {
                unprotected.push((*id, *size));
            } else {
                lost.entry(*id)
                    .or_insert_with(|| "damaged and in no parity group".into());
            }
        }
        report.groups_written += protect_packs(storage, keys, &unprotected, rng)?;
        // Unreadable group descriptions protect nothing (their packs were just regrouped):
        // removed when recognisably ours.
        for (key, _) in &bad_groups {
            if layout::owned(storage, key)? {
                delete_if_present(storage, key)?;
            }
        }
        report.parity_groups_moved = move_legacy_groups(storage, &groups)?;
        report.foreign_files = layout::foreign(storage)?;

        // Name the snapshots that need what is lost.
        if !lost.is_empty() {
            let mut blob_pack: HashMap<Id, Id> = HashMap::new();
            for (pack, (_, entries)) in &old_view.packs {
                if lost.contains_key(pack) {
                    for e in entries {
                        blob_pack.insert(e.id, *pack);
                    }
                }
            }
            let mut affected: HashMap<Id, BTreeSet<Id>> = HashMap::new();
            for sid in self.snapshot_ids()? {
                let Ok(snap) = self.load_snapshot(sid) else {
                    continue;
                };
                for pack in self.packs_needed_by(&snap, &old_view, &blob_pack) {
                    affected.entry(pack).or_default().insert(sid);
                }
            }
            for (pack, reason) in lost {
                report.unrecoverable.push(Unrecoverable {
                    pack,
                    reason,
                    snapshots: affected
                        .remove(&pack)
                        .map(|s| s.into_iter().collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(report)
    }

    /// Which of the packs in `blob_pack` (blob → lost pack) snapshot `snap` needs.
    fn packs_needed_by(
        &self,
        snap: &Snapshot,
        view: &IndexView,
        blob_pack: &HashMap<Id, Id>,
    ) -> BTreeSet<Id> {
        let mut needed = BTreeSet::new();
        for item in &snap.manifest.items {
            for list in &item.chunk_lists {
                if let Some(p) = blob_pack.get(list) {
                    needed.insert(*p);
                    continue;
                }
                let Ok(ids) = self.read_list_blob(view, list) else {
                    continue;
                };
                for id in ids {
                    if let Some(p) = blob_pack.get(&id) {
                        needed.insert(*p);
                    }
                }
            }
        }
        needed
    }

    fn read_list_blob(&self, view: &IndexView, list: &Id) -> Result<Vec<Id>> {
        let loc = view
            .blobs
            .get(list)
            .ok_or_else(|| Error::corruption(format!("chunk list {list}"), "not in the index"))?;
        let stored = self.storage().get_range(
            &pack_key(&loc.pack),
            loc.entry.offset as u64,
            loc.entry.stored_len as u64,
        )?;
        let raw = decode_blob(self.keys(), loc, &stored)?;
        decode_chunk_list(&raw).map_err(|why| Error::corruption(format!("chunk list {list}"), why))
    }

    /// Apply a retention policy and collect garbage: the snapshots `retention.filter` selects
    /// are grouped and the policy applied to each group. With `dry_run` nothing changes and the
    /// report is what a real run would do. Errors: [`Error::InvalidArgument`] for an empty or
    /// invalid policy; see [`Repository::prune_with_progress`].
    pub fn prune(
        &self,
        retention: &Retention,
        dry_run: bool,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<PruneReport> {
        self.prune_with_progress(retention, dry_run, info, rng, is_stale, &mut |_, _, _| {
            Ok(())
        })
    }

    /// [`Repository::prune`], reporting progress as `(bytes done, bytes in all, what is being
    /// done)`: the bytes are those of the packs read for rewriting and of the packs deleted.
    /// An error the callback returns (`Cancelled`: a signal arrived) stops prune there, as a
    /// crash would (every step is safe to interrupt), and is returned.
    pub fn prune_with_progress(
        &self,
        retention: &Retention,
        dry_run: bool,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
        on_progress: &mut dyn FnMut(u64, u64, &str) -> Result<()>,
    ) -> Result<PruneReport> {
        retention.policy.validate()?;
        if retention.policy.is_empty() {
            return Err(Error::InvalidArgument(
                "no retention rule given (keep-last, keep-hourly/daily/weekly/monthly/yearly, keep-within*, keep-tag): prune would remove every snapshot".into(),
            ));
        }
        self.collect(
            Selection::Policy(retention),
            dry_run,
            info,
            rng,
            is_stale,
            on_progress,
        )
    }

    /// Remove exactly the snapshots `refs` names (full ids or unique prefixes; `latest` is
    /// refused: name the snapshot) and collect the garbage only they made, in prune's
    /// crash-safe order. Errors: [`Error::InvalidArgument`] for `latest` or no snapshot,
    /// [`Error::SnapshotNotFound`] / [`Error::AmbiguousSnapshotId`] for a bad reference.
    pub fn forget(
        &self,
        refs: &[String],
        dry_run: bool,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
        on_progress: &mut dyn FnMut(u64, u64, &str) -> Result<()>,
    ) -> Result<PruneReport> {
        if refs.is_empty() {
            return Err(Error::InvalidArgument(
                "forget needs the ids of the snapshots to remove".into(),
            ));
        }
        if let Some(r) = refs
            .iter()
            .find(|r| r.trim().eq_ignore_ascii_case("latest"))
        {
            return Err(Error::InvalidArgument(format!(
                "forget does not take {r:?}: give the snapshot's id (see `snapshots`)"
            )));
        }
        self.collect(
            Selection::Snapshots(refs),
            dry_run,
            info,
            rng,
            is_stale,
            on_progress,
        )
    }

    fn collect(
        &self,
        selection: Selection<'_>,
        dry_run: bool,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
        on_progress: &mut dyn FnMut(u64, u64, &str) -> Result<()>,
    ) -> Result<PruneReport> {
        if dry_run {
            // A shared lock: a dry run changes nothing, but must see a repository no prune is changing.
            let mut shared = info.clone();
            shared.exclusive = false;
            let held = self.lock(&shared, rng, is_stale)?;
            let plan = on_progress(0, 0, "reading snapshots and index")
                .and_then(|()| self.plan_prune(&selection));
            self.unlock(&held)?;
            return Ok(plan?.report(true));
        }
        self.with_exclusive(info, rng, is_stale, |rng, held| {
            on_progress(0, 0, "reading snapshots and index")?;
            let plan = self.plan_prune(&selection)?;
            let freed = self.execute_prune(&plan, &held.lock, rng, on_progress)?;
            let mut report = plan.report(false);
            report.freed_bytes = freed;
            Ok(report)
        })
    }

    /// The snapshots `selection` removes from `all`, and the policy's groups.
    fn select(
        &self,
        selection: &Selection<'_>,
        all: &[Snapshot],
    ) -> Result<(HashSet<Id>, Vec<GroupDecision>)> {
        match selection {
            Selection::Policy(r) => {
                let considered: Vec<Snapshot> = all
                    .iter()
                    .filter(|s| r.filter.matches(s))
                    .cloned()
                    .collect();
                let groups = apply_grouped(&r.policy, r.group_by, &considered, r.now.as_ref());
                // A policy that keeps nothing of a series (only keep-tag rules none of its
                // snapshots match) would wipe it out: refuse, as restic does.
                if let Some(g) = groups.iter().find(|g| g.kept.is_empty()) {
                    return Err(Error::InvalidArgument(format!(
                        "refusing to remove every snapshot of the group {}: the policy ({}) keeps none of its {} snapshots (use forget to remove snapshots by id)",
                        g.key, r.policy, g.removed.len()
                    )));
                }
                let removed = groups
                    .iter()
                    .flat_map(|g| g.removed.iter().copied())
                    .collect();
                Ok((removed, groups))
            }
            Selection::Snapshots(refs) => {
                let mut removed = HashSet::new();
                for r in refs.iter() {
                    removed.insert(resolve_snapshot_prefix(all.iter().map(|s| s.id), r)?);
                }
                Ok((removed, Vec::new()))
            }
        }
    }

    fn plan_prune(&self, selection: &Selection<'_>) -> Result<PrunePlan> {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let mut ledger = Ledger::default();

        // Snapshots: every one must be readable, or we cannot know what is still needed.
        let snapshot_sizes: HashMap<Id, u64> = storage
            .list(crate::snapshot::SNAPSHOT_PREFIX)?
            .into_iter()
            .filter_map(|(k, s)| Some((crate::snapshot::snapshot_id_of_key(&k)?, s)))
            .collect();
        let mut all = Vec::new();
        for id in snapshot_sizes.keys() {
            self.check_interrupt()?;
            match self.load_snapshot(*id) {
                Ok(s) => all.push(s),
                // Withdrawn since listed (an ingest whose commit check failed).
                Err(Error::SnapshotNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Manifests an ingest is committing: not subject to the policy, but their data stays.
        let pending = self.pending_snapshots(&snapshot_sizes.keys().copied().collect())?;
        let mut seen: HashSet<Id> = snapshot_sizes.keys().copied().collect();
        seen.extend(pending.iter().map(|s| s.id));
        let (removed_ids, decisions) = self.select(selection, &all)?;
        for id in &removed_ids {
            ledger.deleted += snapshot_sizes[id];
        }

        // Index: every file must be readable too.
        let mut bad = None;
        let (mut view, _) = read_index_view(storage, keys, |key, e| {
            bad.get_or_insert_with(|| (key.to_string(), e.to_string()));
        })?;
        if let Some((key, e)) = bad {
            return Err(Error::corruption(
                key,
                format!("{e}; run repair before prune"),
            ));
        }
        let old_index: Vec<(String, u64)> = layout::only(Kind::Index, storage.list(INDEX_PREFIX)?);
        let (present, idx_present) = list_packs(storage)?;
        // Packs another prune announced it deletes (it died, or is paused) are never used as a
        // blob's location: their live blobs are copied out and they are deleted with ours.
        let noticed = read_notices(storage, keys)?;
        if let Some(n) = noticed.unreadable.first() {
            return Err(Error::corruption(
                n.clone(),
                "deletion notice cannot be read; run repair before prune",
            ));
        }
        let unusable = |p: &Id| noticed.packs.contains(p) || !present.contains_key(p);
        relocate_blobs(&mut view, &unusable);

        // Mark every blob a remaining snapshot needs (a pending manifest's too, where indexed:
        // one whose ingest failed may name blobs that are gone).
        let mut used: HashSet<Id> = HashSet::new();
        let remaining = all.iter().filter(|s| !removed_ids.contains(&s.id));
        for (snap, required) in remaining
            .map(|s| (s, true))
            .chain(pending.iter().map(|s| (s, false)))
        {
            self.check_interrupt()?;
            for item in &snap.manifest.items {
                for list in &item.chunk_lists {
                    if !required && !view.blobs.contains_key(list) {
                        continue;
                    }
                    used.insert(*list);
                    let ids = self.read_list_blob(&view, list).map_err(|e| match e {
                        // Intact but in an archive class: say that, never "corrupted".
                        e @ Error::Storage(StorageError::Archived { .. }) => e,
                        e => Error::corruption(
                            format!("snapshot {}", snap.id),
                            format!("{e}; run repair before prune"),
                        ),
                    })?;
                    for id in ids {
                        if required && !view.blobs.contains_key(&id) {
                            return Err(Error::corruption(
                                format!("chunk {id}"),
                                "needed by a remaining snapshot but not indexed; run repair before prune",
                            ));
                        }
                        used.insert(id);
                    }
                }
            }
        }

        // Sort packs into keep / rewrite / delete.
        let idx_sizes: HashMap<Id, u64> = storage
            .list("packs/data/")?
            .into_iter()
            .filter_map(|(k, s)| {
                Some((
                    Id::from_hex(k.rsplit('/').next()?.strip_suffix(".idx")?)?,
                    s,
                ))
            })
            .collect();
        let is_live =
            |pack: &Id, e: &PackEntry| used.contains(&e.id) && view.blobs[&e.id].pack == *pack;
        let mut keep: Vec<IndexedPack> = Vec::new();
        let mut doomed: BTreeSet<Id> = BTreeSet::new();
        let mut rewrite: Vec<Location> = Vec::new();
        let mut rewritten = 0;
        let live_entries_of = |pack: &Id, entries: &[PackEntry]| {
            let mut live: Vec<Location> = entries
                .iter()
                .filter(|e| is_live(pack, e))
                .map(|e| Location {
                    pack: *pack,
                    entry: *e,
                })
                .collect();
            live.sort_by_key(|l| l.entry.offset);
            live
        };
        // Packs kept as they are that are small (under a quarter of the target size).
        let mut small: Vec<usize> = Vec::new();
        for (pack, (size, entries)) in &view.packs {
            // Decided on blob bytes only: a pack's header and sealing overhead is not garbage
            // (counting it made every prune rewrite packs of small items, forever).
            let (live, dead) = entries.iter().fold((0u64, 0u64), |(l, d), e| {
                if is_live(pack, e) {
                    (l + e.stored_len as u64, d)
                } else {
                    (l, d + e.stored_len as u64)
                }
            });
            if !present.contains_key(pack) {
                if live > 0 {
                    return Err(Error::corruption(
                        format!("pack {pack}"),
                        "missing but still needed; run repair before prune",
                    ));
                }
                continue;
            }
            if live == 0 {
                doomed.insert(*pack);
            } else if dead * 100 >= REWRITE_THRESHOLD_PERCENT * (live + dead)
                || noticed.packs.contains(pack)
            {
                doomed.insert(*pack);
                rewritten += 1;
                rewrite.extend(live_entries_of(pack, entries));
            } else {
                if *size * SMALL_PACK_DIVISOR < self.config().pack_size {
                    small.push(keep.len());
                }
                keep.push(IndexedPack {
                    id: *pack,
                    size: *size,
                    entries: entries.clone(),
                });
            }
        }
        // Many small packs (many small ingests each store one): merge them into full-size
        // packs, which cuts the pack count at least fourfold.
        let mut merged = 0;
        if small.len() >= MERGE_MIN_SMALL_PACKS {
            let small: HashSet<usize> = small.into_iter().collect();
            let mut stay = Vec::new();
            for (i, p) in keep.into_iter().enumerate() {
                if small.contains(&i) {
                    doomed.insert(p.id);
                    rewrite.extend(live_entries_of(&p.id, &p.entries));
                    merged += 1;
                } else {
                    stay.push(p);
                }
            }
            keep = stay;
            rewritten += merged;
        }
        // Packs no index lists are left by interrupted writers: garbage, when recognisably
        // ours (no key vouches for them).
        for pack in present.keys().filter(|p| !view.packs.contains_key(p)) {
            if layout::owned(storage, &pack_key(pack))? {
                doomed.insert(*pack);
            }
        }
        for pack in &doomed {
            ledger.deleted += present[pack] + idx_sizes.get(pack).copied().unwrap_or(0);
        }
        // `.idx` files whose pack is gone.
        let orphan_idx: Vec<Id> = idx_present
            .iter()
            .filter(|p| !present.contains_key(p))
            .copied()
            .collect::<Vec<Id>>()
            .into_iter()
            .filter_map(|p| match layout::owned(storage, &idx_key(&p)) {
                Ok(true) => Some(Ok(p)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_>>()?;
        for p in &orphan_idx {
            ledger.deleted += idx_sizes[p];
        }

        // New packs for the live blobs of rewritten packs, filled in order and closed, as at
        // ingest, once their blobs reach the target pack size.
        let mut new_packs: Vec<Vec<Location>> = Vec::new();
        let mut current: Vec<Location> = Vec::new();
        let mut len = crate::pack::PACK_MAGIC.len() as u64;
        for loc in rewrite {
            len += loc.entry.stored_len as u64;
            current.push(loc);
            if len >= self.config().pack_size {
                new_packs.push(std::mem::take(&mut current));
                len = crate::pack::PACK_MAGIC.len() as u64;
            }
        }
        if !current.is_empty() {
            new_packs.push(current);
        }
        let mut new_sizes: Vec<u64> = Vec::new();
        for p in &new_packs {
            let size = pack_file_size(
                keys,
                p.len(),
                p.iter().map(|l| l.entry.stored_len as u64).sum(),
            );
            new_sizes.push(size);
            ledger.written += size + idx_file_size(keys, p.len());
        }

        // Parity: groups that lose a member are replaced by groups over their survivors and the
        // new packs; indexed packs without a group are protected too.
        let (groups, _) = load_groups(storage, keys)?;
        let mut affected: Vec<Group> = Vec::new();
        let mut regroup: Vec<(Option<Id>, u64)> = Vec::new();
        let mut grouped: HashSet<Id> = HashSet::new();
        for g in groups {
            if g.desc
                .members
                .iter()
                .any(|m| doomed.contains(&m.pack) || !present.contains_key(&m.pack))
            {
                for m in &g.desc.members {
                    if !doomed.contains(&m.pack)
                        && present.contains_key(&m.pack)
                        && !grouped.contains(&m.pack)
                    {
                        regroup.push((Some(m.pack), m.size));
                        grouped.insert(m.pack);
                    }
                }
                affected.push(g);
            } else {
                grouped.extend(g.desc.members.iter().map(|m| m.pack));
            }
        }
        for p in &keep {
            if !grouped.contains(&p.id) {
                regroup.push((Some(p.id), p.size));
                grouped.insert(p.id);
            }
        }
        regroup.extend(new_sizes.iter().map(|s| (None, *s)));
        // Every parity shard by id, in `parity/` and the legacy `packs/parity/`.
        let listed_parity = crate::parity::list_parity(storage)?;
        let parity_files: Vec<(Id, String, u64)> = listed_parity
            .iter()
            .filter_map(|(k, s)| match layout::classify(k)? {
                (Kind::Parity, Some(id)) => Some((id, k.clone(), *s)),
                _ => None,
            })
            .collect();
        let group_files: HashMap<&str, u64> = listed_parity
            .iter()
            .filter(|(k, _)| layout::is(Kind::Group, k))
            .map(|(k, s)| (k.as_str(), *s))
            .collect();
        for g in &affected {
            ledger.deleted += group_files.get(g.key.as_str()).copied().unwrap_or(0)
                + parity_files
                    .iter()
                    .find(|(_, k, _)| *k == g.parity_key())
                    .map_or(0, |(_, _, s)| *s);
        }
        let remaining_groups: HashSet<Id> = self.remaining_parity(&affected)?;
        let orphan_parity: Vec<String> = parity_files
            .iter()
            .filter(|(id, key, _)| {
                !remaining_groups.contains(id) && !affected.iter().any(|g| g.parity_key() == *key)
            })
            .map(|(_, key, size)| {
                ledger.deleted += size;
                key.clone()
            })
            .collect();
        for batch in regroup.chunks(GROUP_SIZE) {
            let shard_len = batch.iter().map(|(_, s)| *s).max().unwrap_or(0);
            ledger.written += shard_len + group_description_size(self, batch);
        }

        // The new index: every kept pack and every new pack. Written only when the packs it
        // lists change or the old one is spread over more files than needed: a prune with
        // nothing to do writes nothing.
        let mut counts: Vec<usize> = keep.iter().map(|p| p.entries.len()).collect();
        counts.extend(new_packs.iter().map(Vec::len));
        let rewrite_index = keep.len() != view.packs.len()
            || !new_packs.is_empty()
            || old_index.len() != counts.chunks(PACKS_PER_INDEX_FILE).count();
        let old_index = match rewrite_index {
            true => old_index,
            false => Vec::new(),
        };
        if rewrite_index {
            ledger.deleted += old_index.iter().map(|(_, s)| s).sum::<u64>();
            for batch in counts.chunks(PACKS_PER_INDEX_FILE) {
                ledger.written += index_file_size(keys, batch);
            }
        }

        let mut newest_first = all.clone();
        newest_first.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        Ok(PrunePlan {
            seen,
            kept: decisions
                .iter()
                .flat_map(|g| g.kept.iter().map(|k| k.id))
                .collect(),
            removed: newest_first
                .iter()
                .filter(|s| removed_ids.contains(&s.id))
                .map(|s| s.id)
                .collect(),
            groups: decisions,
            keep,
            doomed,
            rewritten,
            new_packs,
            regroup,
            affected,
            orphan_idx,
            orphan_parity,
            foreign_files: layout::foreign(storage)?,
            rewrite_index,
            merged,
            old_index: old_index.into_iter().map(|(k, _)| k).collect(),
            freed: ledger.freed(),
        })
    }

    /// Parity ids of every group not being replaced.
    fn remaining_parity(&self, affected: &[Group]) -> Result<HashSet<Id>> {
        let (groups, _) = load_groups(self.storage(), self.keys())?;
        Ok(groups
            .into_iter()
            .filter(|g| !affected.iter().any(|a| a.key == g.key))
            .map(|g| g.desc.parity)
            .collect())
    }

    /// Remove deletion notices none of whose packs exists any more (their prune finished its
    /// deletions, or a later prune did them). A notice naming a pack still there stays: that
    /// pack must not be reused, whoever wrote the notice and whether or not it still runs.
    fn remove_finished_notices(&self) -> Result<()> {
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

    /// Manifests under `snapshots/pending/` whose id is not in `committed` (a pending manifest
    /// gone between listing and reading has been committed or withdrawn).
    fn pending_snapshots(&self, committed: &HashSet<Id>) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for (key, _) in self.storage().list(PENDING_PREFIX)? {
            let Some(id) = pending_id_of_key(&key) else {
                continue;
            };
            if committed.contains(&id) {
                continue;
            }
            match self.storage().get(&key) {
                // Without the manifest magic it is no ingest's of ours: another program's file.
                Ok(data) if !layout::has_magic(Kind::PendingSnapshot, &data) => {}
                Ok(data) => out.push(decode_snapshot(self.keys(), id, &data).map_err(|e| {
                    Error::corruption(key.clone(), format!("{e}; run repair before prune"))
                })?),
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// After announcing its deletions, prune looks once more for snapshots (committed or
    /// pending) written since it planned: if one needs a blob that lives only in a pack about
    /// to be deleted, nothing is deleted.
    fn check_new_snapshots(&self, plan: &PrunePlan, copied: &HashSet<Id>) -> Result<()> {
        let storage = self.storage();
        // Pending manifests first, then committed ones: an ingest deletes its pending manifest
        // only after writing the final one, so a manifest that moved between the two listings
        // is in the second.
        let mut fresh: Vec<Snapshot> = self
            .pending_snapshots(&HashSet::new())?
            .into_iter()
            .filter(|s| !plan.seen.contains(&s.id))
            .collect();
        for (key, _) in storage.list(SNAPSHOT_PREFIX)? {
            let Some(id) = snapshot_id_of_key(&key) else {
                continue;
            };
            if plan.seen.contains(&id) || fresh.iter().any(|s| s.id == id) {
                continue;
            }
            match self.load_snapshot(id) {
                Ok(s) => fresh.push(s),
                Err(Error::SnapshotNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let (view, _) = read_index_view(storage, self.keys(), |_, _| {})?;
        let conflict = |snap: &Snapshot, why: String| {
            Error::ConcurrentModification {
            object: format!("snapshot {}", snap.id),
            reason: format!(
                "it was written while this prune ran and {why}; nothing was deleted (run prune again)"
            ),
        }
        };
        for snap in &fresh {
            for item in &snap.manifest.items {
                for list in &item.chunk_lists {
                    let mut needed = vec![*list];
                    let ids = self.read_list_blob(&view, list).map_err(|e| {
                        conflict(
                            snap,
                            format!("its chunk list {list} cannot be checked ({e})"),
                        )
                    })?;
                    needed.extend(ids);
                    for id in needed {
                        let Some(loc) = view.blobs.get(&id) else {
                            return Err(conflict(snap, format!("chunk {id} is in no index file")));
                        };
                        if plan.doomed.contains(&loc.pack) && !copied.contains(&id) {
                            return Err(conflict(
                                snap,
                                format!(
                                    "needs pack {}, which the prune was about to delete",
                                    loc.pack
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn execute_prune(
        &self,
        plan: &PrunePlan,
        own: &HeldLock,
        rng: &mut dyn RandomSource,
        on_progress: &mut dyn FnMut(u64, u64, &str) -> Result<()>,
    ) -> Result<i64> {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let sizes: HashMap<String, u64> = storage.list("packs/data/")?.into_iter().collect();
        let size_of = |id: &Id| sizes.get(&pack_key(id)).copied().unwrap_or(0);
        let sources: HashSet<Id> = plan.new_packs.iter().flatten().map(|l| l.pack).collect();
        let total: u64 = sources.iter().chain(&plan.doomed).map(size_of).sum();
        let mut done = 0u64;
        let rewrite_total = sources.len();
        // 1. New packs (and their .idx) with the live blobs of rewritten packs.
        let mut new_indexed: Vec<IndexedPack> = Vec::new();
        let mut source: Option<(Id, Vec<u8>)> = None;
        for locs in &plan.new_packs {
            let mut builder = PackBuilder::new();
            for loc in locs {
                if source.as_ref().is_none_or(|(id, _)| *id != loc.pack) {
                    let bytes = storage.get(&pack_key(&loc.pack))?;
                    done += bytes.len() as u64;
                    on_progress(
                        done,
                        total,
                        &format!("rewriting packs ({rewrite_total} partly used)"),
                    )?;
                    source = Some((loc.pack, bytes));
                }
                let (_, bytes) = source.as_ref().expect("just loaded");
                let e = &loc.entry;
                let stored = bytes
                    .get(e.offset as usize..(e.offset + e.stored_len) as usize)
                    .ok_or_else(|| Error::corruption(format!("pack {}", loc.pack), "truncated"))?;
                // Check before copying: prune must never spread damage into new packs.
                decode_blob(keys, loc, stored)?;
                builder.add(e.id, stored, e.raw_len as usize, e.compression, e.kind);
            }
            let pack = builder.finish(keys, random_bytes(rng));
            let size = pack.data.len() as u64;
            put_exact(storage, &pack_key(&pack.id), &pack.data)?;
            put_exact(
                storage,
                &idx_key(&pack.id),
                &encode_idx(keys, &pack.id, size, &pack.entries, random_bytes(rng)),
            )?;
            new_indexed.push(IndexedPack {
                id: pack.id,
                size,
                entries: pack.entries,
            });
        }
        // 2. Parity groups over the survivors of changed groups and the new packs.
        let mut new_iter = new_indexed.iter();
        let members: Vec<Id> = plan
            .regroup
            .iter()
            .map(|(id, _)| {
                id.unwrap_or_else(|| new_iter.next().expect("one new pack per planned slot").id)
            })
            .collect();
        protect_packs(
            storage,
            keys,
            &members.iter().map(|id| (*id, 0)).collect::<Vec<_>>(),
            rng,
        )?;
        // 3. The new index.
        on_progress(done, total, "writing the index")?;
        let copied: HashSet<Id> = new_indexed
            .iter()
            .flat_map(|p| p.entries.iter().map(|e| e.id))
            .collect();
        let mut all = plan.keep.clone();
        all.extend(new_indexed);
        let written = match plan.rewrite_index {
            true => self.write_index_files(&all, rng)?.0,
            false => Default::default(),
        };
        // Announce the deletions, then look for snapshots written since the plan (an ingest
        // whose lock this prune judged stale, or that started without seeing our lock).
        let notice = match plan.doomed.is_empty() {
            true => None,
            false => Some(write_notice(
                storage,
                keys,
                &own.key().unwrap_or_default(),
                &plan.doomed,
                rng,
            )?),
        };
        let withdraw = |e: Error| {
            if let Some(n) = &notice {
                let _ = storage.delete(n);
            }
            e
        };
        self.check_new_snapshots(plan, &copied).map_err(withdraw)?;
        // Our lock may be renewed (a new key) while we list: list again until the key is
        // the same before and after.
        let mut still_locked = false;
        let mut own_key = String::new();
        for _ in 0..10 {
            own_key = own.key().unwrap_or_default();
            let listed = storage.list(LOCK_PREFIX).map_err(|e| withdraw(e.into()))?;
            still_locked = listed.iter().any(|(k, _)| *k == own_key);
            if own.key().unwrap_or_default() == own_key {
                break;
            }
        }
        if own.lost() || !still_locked {
            return Err(withdraw(Error::ConcurrentModification {
                object: format!("lock {own_key}"),
                reason: "another process removed this prune's lock (unlock --force, or it judged the lock stale); nothing was deleted".into(),
            }));
        }
        // 4. Snapshots.
        for id in &plan.removed {
            delete_if_present(storage, &snapshot_key(id))?;
        }
        // 5. Old index files, 6. replaced groups, 7. dead packs and leftovers.
        for key in plan.old_index.iter().filter(|k| !written.contains(k)) {
            delete_if_present(storage, key)?;
        }
        for g in &plan.affected {
            crate::parity::remove_group(storage, g)?;
        }
        for key in &plan.orphan_parity {
            // No group names it, so no key vouches for it: delete it only if it is ours (its
            // content hashes to its name).
            if layout::owned(storage, key)? {
                delete_if_present(storage, key)?;
            }
        }
        for (i, p) in plan.doomed.iter().enumerate() {
            delete_if_present(storage, &pack_key(p))?;
            delete_if_present(storage, &idx_key(p))?;
            done += size_of(p);
            // Asked to stop: the packs left are unindexed garbage, and stay announced (an
            // ingest that loaded the old index must not reuse them); the next prune deletes
            // them and then the notice.
            on_progress(
                done,
                total,
                &format!("deleted {} of {} unused packs", i + 1, plan.doomed.len()),
            )?;
        }
        on_progress(total, total, "done")?;
        for p in &plan.orphan_idx {
            delete_if_present(storage, &idx_key(p))?;
        }
        if let Some(n) = &notice {
            delete_if_present(storage, n)?;
        }
        // Notices of prunes that died: ours deleted what they named.
        self.remove_finished_notices()?;
        // 8. A group written meanwhile by an ingest that extended a replaced group (it read the
        // group before this prune removed it) may name deleted packs: protect its survivors anew.
        self.regroup_broken_groups(None, rng)?;
        // What this prune deleted less what it wrote (the plan's exact sizes): the repository's
        // size before and after would count what other processes wrote meanwhile.
        Ok(plan.freed)
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

/// Point every blob whose indexed location is in an unusable pack (missing, or announced for
/// deletion) at another copy in a usable pack, where there is one.
fn relocate_blobs(view: &mut IndexView, unusable: &dyn Fn(&Id) -> bool) {
    if !view.blobs.values().any(|l| unusable(&l.pack)) {
        return;
    }
    for (pack, (_, entries)) in &view.packs {
        if unusable(pack) {
            continue;
        }
        for e in entries {
            if let Some(loc) = view.blobs.get_mut(&e.id) {
                if unusable(&loc.pack) {
                    *loc = Location {
                        pack: *pack,
                        entry: *e,
                    };
                }
            }
        }
    }
}

fn group_description_size<S: Storage>(repo: &Repository<S>, batch: &[(Option<Id>, u64)]) -> u64 {
    let desc = GroupDescription {
        version: 1,
        scheme: "reed-solomon-gf8".into(),
        data_shards: GROUP_SIZE as u32,
        parity_shards: PARITY_SHARDS as u32,
        shard_len: batch.iter().map(|(_, s)| *s).max().unwrap_or(0),
        members: batch
            .iter()
            .map(|(_, size)| Member {
                pack: Id::default(),
                size: *size,
            })
            .collect(),
        parity: Id::default(),
    };
    encode_group(repo.keys(), &desc, [0; 12]).1.len() as u64
}

/// Group `packs` (read from storage) into new parity groups of up to 20; returns groups written.
fn protect_packs(
    storage: &dyn Storage,
    keys: &crate::crypto::Keys,
    packs: &[(Id, u64)],
    rng: &mut dyn RandomSource,
) -> Result<u64> {
    let mut written = 0;
    for batch in packs.chunks(GROUP_SIZE) {
        let mut b = ParityBuilder::new();
        for (id, _) in batch {
            b.add(*id, &storage.get(&pack_key(id))?);
        }
        b.store(storage, keys, random_bytes(rng))?;
        written += 1;
    }
    Ok(written)
}

/// What an operation under the exclusive lock gets: the lock, and the stale locks removed.
struct Exclusive {
    lock: std::sync::Arc<HeldLock>,
    locks_removed: Vec<String>,
}

struct PrunePlan {
    /// Every snapshot and pending manifest the plan took into account.
    seen: HashSet<Id>,
    kept: Vec<Id>,
    removed: Vec<Id>,
    groups: Vec<GroupDecision>,
    keep: Vec<IndexedPack>,
    doomed: BTreeSet<Id>,
    rewritten: u64,
    new_packs: Vec<Vec<Location>>,
    regroup: Vec<(Option<Id>, u64)>,
    affected: Vec<Group>,
    orphan_idx: Vec<Id>,
    orphan_parity: Vec<String>,
    /// Whether the index is written anew (and `old_index` removed).
    rewrite_index: bool,
    /// Small packs merged into full-size ones.
    merged: u64,
    old_index: Vec<String>,
    freed: i64,
    foreign_files: Vec<String>,
}

impl PrunePlan {
    fn report(&self, dry_run: bool) -> PruneReport {
        PruneReport {
            kept: self.kept.clone(),
            removed: self.removed.clone(),
            groups: self.groups.clone(),
            removed_packs: self.doomed.len() as u64,
            rewritten_packs: self.rewritten,
            merged_packs: self.merged,
            new_packs: self.new_packs.len() as u64,
            freed_bytes: self.freed,
            dry_run,
            foreign_files: self.foreign_files.clone(),
        }
    }
}
