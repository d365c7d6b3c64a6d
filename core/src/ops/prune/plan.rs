//! Prune's plan: every snapshot and index file read, every blob still needed marked, every
//! pack sorted into keep / rewrite / delete, new packs and parity groups laid out, and the
//! bytes freed predicted from encoded sizes. Nothing is written here.

use super::{
    PruneReport, Selection, MERGE_MIN_SMALL_PACKS, REWRITE_THRESHOLD_PERCENT, SMALL_PACK_DIVISOR,
};
use crate::upkeep::PACKS_PER_REBUILT_INDEX_FILE;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{index_file_size, IndexedPack, Location, INDEX_PREFIX};
use crate::layout::{self, Kind};
use crate::notice::read_notices;
use crate::pack::{
    base_closure, extras_count, idx_file_size, idx_key, pack_file_size, pack_key, PackEntry,
};
use crate::parity::{
    encode_group, load_groups, Group, GroupDescription, Member, GROUP_SIZE, PARITY_SHARDS,
};
use crate::repo::Repository;
use crate::retention::GroupDecision;
use crate::scan::{list_packs, read_chunk_list, read_index_view, IndexView};
use crate::snapshot::{decode_snapshot, pending_id_of_key, Snapshot, PENDING_PREFIX};
use crate::storage::{Storage, StorageError};

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

pub(super) struct PrunePlan {
    /// Every snapshot and pending manifest the plan took into account.
    pub(super) seen: HashSet<Id>,
    pub(super) kept: Vec<Id>,
    pub(super) removed: Vec<Id>,
    pub(super) groups: Vec<GroupDecision>,
    pub(super) keep: Vec<IndexedPack>,
    pub(super) doomed: BTreeSet<Id>,
    pub(super) rewritten: u64,
    pub(super) new_packs: Vec<Vec<Location>>,
    /// Where the base of each delta in `new_packs` is (read to check the delta before copying).
    pub(super) bases: HashMap<Id, Location>,
    pub(super) regroup: Vec<(Option<Id>, u64)>,
    pub(super) affected: Vec<Group>,
    pub(super) orphan_idx: Vec<Id>,
    pub(super) orphan_parity: Vec<String>,
    /// Whether the index is written anew (and `old_index` removed).
    pub(super) rewrite_index: bool,
    /// Small packs merged into full-size ones.
    pub(super) merged: u64,
    pub(super) old_index: Vec<String>,
    pub(super) freed: i64,
    pub(super) foreign_files: Vec<String>,
}

impl PrunePlan {
    pub(super) fn report(&self, dry_run: bool) -> PruneReport {
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

/// Phase 1's result: the snapshots, those pending, and what the selection removes.
struct SnapshotsRead {
    all: Vec<Snapshot>,
    /// Snapshots whose manifest cannot be read, which `forget` named: removed too.
    unreadable_removed: Vec<Id>,
    pending: Vec<Snapshot>,
    seen: HashSet<Id>,
    removed: HashSet<Id>,
    decisions: Vec<GroupDecision>,
}

/// Phase 2's result: the index (blobs moved away from unusable packs) and what storage holds.
struct Stored {
    view: IndexView,
    old_index: Vec<(String, u64)>,
    present: HashMap<Id, u64>,
    idx_present: HashSet<Id>,
    /// Packs another prune announced it deletes.
    noticed: HashSet<Id>,
    /// `.idx` file sizes by pack.
    idx_sizes: HashMap<Id, u64>,
}

/// Phase 4's result: each pack's fate.
#[derive(Default)]
struct PackFates {
    keep: Vec<IndexedPack>,
    doomed: BTreeSet<Id>,
    /// Live blobs of rewritten packs, in pack and offset order.
    rewrite: Vec<Location>,
    rewritten: u64,
    merged: u64,
    orphan_idx: Vec<Id>,
}

/// Phase 6's result: the parity groups replaced and the packs regrouped.
struct ParityPlan {
    regroup: Vec<(Option<Id>, u64)>,
    affected: Vec<Group>,
    orphan_parity: Vec<String>,
}

impl<S: Storage> Repository<S> {
    /// Plan a prune: read snapshots and index, mark what is used, decide each pack's fate, lay
    /// out new packs, parity and index, and predict the bytes freed. Nothing is written.
    pub(super) fn plan_prune(&self, selection: &Selection<'_>) -> Result<PrunePlan> {
        let mut ledger = Ledger::default();
        let snaps = self.read_snapshots(selection, &mut ledger)?;
        let stored = self.read_stored()?;
        let used = self.mark_used(&snaps, &stored.view)?;
        let fates = self.decide_packs(&stored, &used, &mut ledger)?;
        let (new_packs, new_sizes) = self.lay_out_new_packs(&fates.rewrite, &mut ledger);
        let parity = self.plan_parity(&stored, &fates, &new_sizes, &mut ledger)?;
        // The new index: every kept pack and every new pack. Written only when the packs it
        // lists change or the old one is spread over more files than needed: a prune with
        // nothing to do writes nothing.
        let mut counts: Vec<(usize, usize)> = fates
            .keep
            .iter()
            .map(|p| (p.entries.len(), extras_count(p.entries.iter())))
            .collect();
        counts.extend(
            new_packs
                .iter()
                .map(|p| (p.len(), extras_count(p.iter().map(|l| &l.entry)))),
        );
        let rewrite_index = fates.keep.len() != stored.view.packs.len()
            || !new_packs.is_empty()
            || stored.old_index.len() != counts.chunks(PACKS_PER_REBUILT_INDEX_FILE).count();
        let mut old_index = Vec::new();
        if rewrite_index {
            ledger.deleted += stored.old_index.iter().map(|(_, s)| s).sum::<u64>();
            for batch in counts.chunks(PACKS_PER_REBUILT_INDEX_FILE) {
                ledger.written += index_file_size(self.keys(), batch);
            }
            old_index = stored.old_index.into_iter().map(|(k, _)| k).collect();
        }

        let view = &stored.view;
        let bases = base_closure(new_packs.iter().flatten().map(|l| l.entry.id), |id| {
            view.blobs.get(id)?.entry.bases()
        })
        .into_iter()
        .filter_map(|b| Some((b, *view.blobs.get(&b)?)))
        .collect();
        let mut newest_first = snaps.all.clone();
        newest_first.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        Ok(PrunePlan {
            seen: snaps.seen,
            kept: snaps
                .decisions
                .iter()
                .flat_map(|g| g.kept.iter().map(|k| k.id))
                .collect(),
            removed: newest_first
                .iter()
                .filter(|s| snaps.removed.contains(&s.id))
                .map(|s| s.id)
                .chain(snaps.unreadable_removed.iter().copied())
                .collect(),
            groups: snaps.decisions,
            keep: fates.keep,
            doomed: fates.doomed,
            rewritten: fates.rewritten,
            new_packs,
            bases,
            regroup: parity.regroup,
            affected: parity.affected,
            orphan_idx: fates.orphan_idx,
            orphan_parity: parity.orphan_parity,
            foreign_files: layout::foreign(self.storage())?,
            rewrite_index,
            merged: fates.merged,
            old_index,
            freed: ledger.freed(),
        })
    }

    /// Phase 1: every snapshot must be readable (or be one `forget` removes), or we cannot
    /// know what is still needed.
    fn read_snapshots(
        &self,
        selection: &Selection<'_>,
        ledger: &mut Ledger,
    ) -> Result<SnapshotsRead> {
        let snapshot_sizes: HashMap<Id, u64> = self.snapshot_files()?.into_iter().collect();
        let mut all = Vec::new();
        let mut unreadable: Vec<(Id, Error)> = Vec::new();
        for id in snapshot_sizes.keys() {
            self.check_interrupt()?;
            match self.load_snapshot(*id) {
                Ok(s) => all.push(s),
                // Withdrawn since listed (an ingest whose commit check failed).
                Err(Error::SnapshotNotFound(_)) => {}
                Err(e @ Error::Corruption { .. }) => unreadable.push((*id, e)),
                // This one file cannot be read (an I/O error, not a regular file): unreadable,
                // as a damaged one is (an archived manifest stops the prune instead).
                Err(Error::Storage(e)) if !matches!(e, StorageError::Archived { .. }) => unreadable
                    .push((
                        *id,
                        Error::corruption(format!("snapshot {id}"), format!("cannot be read: {e}")),
                    )),
                Err(e) => return Err(e),
            }
        }
        unreadable.sort_by_key(|(id, _)| *id);
        // Manifests an ingest is committing: not subject to the policy, but their data stays.
        let pending = self.pending_snapshots(&snapshot_sizes.keys().copied().collect())?;
        let mut seen: HashSet<Id> = snapshot_sizes.keys().copied().collect();
        seen.extend(pending.iter().map(|s| s.id));
        let unreadable_ids: Vec<Id> = unreadable.iter().map(|(id, _)| *id).collect();
        let (removed, decisions) = self.select(selection, &all, &unreadable_ids)?;
        // A snapshot that cannot be read may reference any blob: with one left, nothing could
        // be judged unused. Only `forget` naming it removes it (its data may then go).
        let blocking: Vec<&(Id, Error)> = unreadable
            .iter()
            .filter(|(id, _)| !removed.contains(id))
            .collect();
        if !blocking.is_empty() {
            let ids: Vec<String> = blocking.iter().map(|(id, _)| id.to_hex()).collect();
            let reasons: Vec<String> = blocking.iter().map(|(_, e)| e.detail()).collect();
            return Err(Error::corruption(
                format!("snapshot {}", ids.join(", ")),
                format!(
                    "{} ({}); the data such a snapshot references cannot be known, so nothing \
                     was deleted: run repair (it restores a manifest from its copy), or remove \
                     the snapshot with `forget {}`",
                    if ids.len() == 1 {
                        "its manifest cannot be read"
                    } else {
                        "their manifests cannot be read"
                    },
                    reasons.join("; "),
                    ids.join(" ")
                ),
            ));
        }
        for id in &removed {
            ledger.deleted += snapshot_sizes[id];
        }
        let unreadable_removed = unreadable_ids;
        Ok(SnapshotsRead {
            all,
            unreadable_removed,
            pending,
            seen,
            removed,
            decisions,
        })
    }

    /// Phase 2: every index file must be readable too; packs another prune announced it
    /// deletes (it died, or is paused) are never used as a blob's location: their live blobs
    /// are copied out and they are deleted with ours.
    fn read_stored(&self) -> Result<Stored> {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
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
        let noticed = read_notices(storage, keys)?;
        if let Some(n) = noticed.unreadable.first() {
            return Err(Error::corruption(
                n.clone(),
                "deletion notice cannot be read; run repair before prune",
            ));
        }
        let unusable = |p: &Id| noticed.packs.contains(p) || !present.contains_key(p);
        relocate_blobs(&mut view, &unusable);
        // Named as `list_packs` names them, so every `.idx` it lists has its size here.
        let idx_sizes: HashMap<Id, u64> = storage
            .list(crate::layout::PACK_DATA_PREFIX)?
            .into_iter()
            .filter_map(|(k, s)| match layout::classify(&k)? {
                (Kind::PackIdx, Some(id)) => Some((id, s)),
                _ => None,
            })
            .collect();
        Ok(Stored {
            view,
            old_index,
            present,
            idx_present,
            noticed: noticed.packs,
            idx_sizes,
        })
    }

    /// Phase 3: every blob a remaining snapshot needs (a pending manifest's too, where
    /// indexed: one whose ingest failed may name blobs that are gone).
    fn mark_used(&self, snaps: &SnapshotsRead, view: &IndexView) -> Result<HashSet<Id>> {
        let mut used: HashSet<Id> = HashSet::new();
        let remaining = snaps.all.iter().filter(|s| !snaps.removed.contains(&s.id));
        for (snap, required) in remaining
            .map(|s| (s, true))
            .chain(snaps.pending.iter().map(|s| (s, false)))
        {
            self.check_interrupt()?;
            for item in &snap.manifest.items {
                for list in &item.chunk_lists {
                    if !required && !view.blobs.contains_key(list) {
                        continue;
                    }
                    used.insert(*list);
                    let ids =
                        read_chunk_list(self.storage(), self.keys(), view, list).map_err(|e| {
                            match e {
                                // Intact but in an archive class: say that, never "corrupted".
                                e @ Error::Storage(StorageError::Archived { .. }) => e,
                                e => Error::corruption(
                                    format!("snapshot {}", snap.id),
                                    format!("{e}; run repair before prune"),
                                ),
                            }
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
        // A delta needs its bases, whoever else does, and they theirs.
        let bases = base_closure(used.iter().copied(), |id| view.blobs.get(id)?.entry.bases());
        for base in bases {
            if !view.blobs.contains_key(&base) {
                return Err(Error::corruption(
                    format!("chunk {base}"),
                    "the base of a delta a remaining snapshot needs, but not indexed; run repair before prune",
                ));
            }
            used.insert(base);
        }
        Ok(used)
    }

    /// Phase 4: sort packs into keep / rewrite / delete; merge small packs; collect leftovers
    /// of interrupted writers.
    fn decide_packs(
        &self,
        stored: &Stored,
        used: &HashSet<Id>,
        ledger: &mut Ledger,
    ) -> Result<PackFates> {
        let storage: &dyn Storage = self.storage();
        let (view, present) = (&stored.view, &stored.present);
        let is_live =
            |pack: &Id, e: &PackEntry| used.contains(&e.id) && view.blobs[&e.id].pack == *pack;
        // A dead delta whose base this prune deletes must leave the index with its pack's
        // rewrite: kept, it would be found by the next ingest's deduplication and reused
        // without its base.
        let orphans_a_delta = |pack: &Id, entries: &[PackEntry]| {
            entries.iter().any(|e| {
                !is_live(pack, e)
                    && e.bases()
                        .is_some_and(|b| b.ids().any(|id| !used.contains(&id)))
            })
        };
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
        let mut f = PackFates::default();
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
                f.doomed.insert(*pack);
            } else if dead * 100 >= REWRITE_THRESHOLD_PERCENT * (live + dead)
                || stored.noticed.contains(pack)
                || orphans_a_delta(pack, entries)
            {
                f.doomed.insert(*pack);
                f.rewritten += 1;
                f.rewrite.extend(live_entries_of(pack, entries));
            } else {
                if *size * SMALL_PACK_DIVISOR < self.config().pack_size {
                    small.push(f.keep.len());
                }
                f.keep.push(IndexedPack {
                    id: *pack,
                    size: *size,
                    entries: entries.clone(),
                });
            }
        }
        // Many small packs (many small ingests each store one): merge them into full-size
        // packs, which cuts the pack count at least fourfold.
        if small.len() >= MERGE_MIN_SMALL_PACKS {
            let small: HashSet<usize> = small.into_iter().collect();
            let mut stay = Vec::new();
            for (i, p) in std::mem::take(&mut f.keep).into_iter().enumerate() {
                if small.contains(&i) {
                    f.doomed.insert(p.id);
                    f.rewrite.extend(live_entries_of(&p.id, &p.entries));
                    f.merged += 1;
                } else {
                    stay.push(p);
                }
            }
            f.keep = stay;
            f.rewritten += f.merged;
        }
        // Packs no index lists are left by interrupted writers: garbage, when recognisably
        // ours (no key vouches for them).
        for pack in present.keys().filter(|p| !view.packs.contains_key(p)) {
            if layout::owned(storage, &pack_key(pack))? {
                f.doomed.insert(*pack);
            }
        }
        for pack in &f.doomed {
            ledger.deleted += present[pack] + stored.idx_sizes.get(pack).copied().unwrap_or(0);
        }
        // `.idx` files whose pack is gone.
        for p in stored
            .idx_present
            .iter()
            .filter(|p| !present.contains_key(p))
        {
            if layout::owned(storage, &idx_key(p))? {
                f.orphan_idx.push(*p);
                ledger.deleted += stored.idx_sizes[p];
            }
        }
        Ok(f)
    }

    /// Phase 5: new packs for the live blobs of rewritten packs, filled in order and closed,
    /// as at ingest, once their blobs reach the target pack size; with their predicted sizes.
    fn lay_out_new_packs(
        &self,
        rewrite: &[Location],
        ledger: &mut Ledger,
    ) -> (Vec<Vec<Location>>, Vec<u64>) {
        let mut new_packs: Vec<Vec<Location>> = Vec::new();
        let mut current: Vec<Location> = Vec::new();
        let mut len = crate::pack::PACK_MAGIC.len() as u64;
        for loc in rewrite {
            len += loc.entry.stored_len as u64;
            current.push(*loc);
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
            let extras = extras_count(p.iter().map(|l| &l.entry));
            let size = pack_file_size(
                self.keys(),
                p.len(),
                extras,
                p.iter().map(|l| l.entry.stored_len as u64).sum(),
            );
            new_sizes.push(size);
            ledger.written += size + idx_file_size(self.keys(), p.len(), extras);
        }
        (new_packs, new_sizes)
    }

    /// Phase 6: groups that lose a member are replaced by groups over their survivors and the
    /// new packs; indexed packs without a group are protected too; parity shards no group
    /// names are garbage.
    fn plan_parity(
        &self,
        stored: &Stored,
        fates: &PackFates,
        new_sizes: &[u64],
        ledger: &mut Ledger,
    ) -> Result<ParityPlan> {
        let storage: &dyn Storage = self.storage();
        let (doomed, present) = (&fates.doomed, &stored.present);
        let (groups, _) = load_groups(storage, self.keys())?;
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
        for p in &fates.keep {
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
        Ok(ParityPlan {
            regroup,
            affected,
            orphan_parity,
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

    /// Manifests under `snapshots/pending/` whose id is not in `committed` (a pending manifest
    /// gone between listing and reading has been committed or withdrawn).
    pub(super) fn pending_snapshots(&self, committed: &HashSet<Id>) -> Result<Vec<Snapshot>> {
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
