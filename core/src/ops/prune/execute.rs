//! Prune's execution, in crash-safe order: new packs and their `.idx`, parity over them, the
//! new index, a deletion notice, a last look for snapshots written meanwhile, then the
//! deletions (snapshots, old index files, replaced groups, dead packs and leftovers).

use super::plan::PrunePlan;
use crate::upkeep::{delete_if_present, protect_packs};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::blob::decode_blob;
use crate::crypto::{random_bytes, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{IndexedPack, Location};
use crate::layout::{self};
use crate::lock::{HeldLock, LOCK_PREFIX};
use crate::notice::write_notice;
use crate::pack::{encode_idx, idx_key, pack_key, PackBuilder};
use crate::repo::Repository;
use crate::scan::{read_chunk_list, read_index_view, read_with_bases};
use crate::snapshot::{snapshot_id_of_key, snapshot_key, Snapshot, SNAPSHOT_PREFIX};
use crate::storage::{put_exact, Storage};

/// Byte progress of one execution: the packs read for rewriting and the packs deleted.
struct Tally<'a> {
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(u64, u64, &str) -> Result<()>,
}

impl Tally<'_> {
    fn add(&mut self, bytes: u64, what: &str) -> Result<()> {
        self.done += bytes;
        (self.report)(self.done, self.total, what)
    }
}

/// Blobs copied per read of their deltas' bases: the bases held at once stay bounded (~32 MiB
/// for 256 KiB chunks).
const BLOBS_PER_BASE_READ: usize = 64;

impl<S: Storage> Repository<S> {
    /// Carry out `plan` under the exclusive lock `own`, in the order of the module doc;
    /// returns the bytes freed. Progress is `(bytes done, bytes in all, what)`; an error the
    /// callback returns stops execution there, as a crash would.
    pub(super) fn execute_prune(
        &self,
        plan: &PrunePlan,
        own: &HeldLock,
        rng: &mut dyn RandomSource,
        on_progress: &mut dyn FnMut(u64, u64, &str) -> Result<()>,
    ) -> Result<i64> {
        let storage: &dyn Storage = self.storage();
        let sizes: HashMap<String, u64> = storage
            .list(crate::layout::PACK_DATA_PREFIX)?
            .into_iter()
            .collect();
        let size_of = |id: &Id| sizes.get(&pack_key(id)).copied().unwrap_or(0);
        let sources: HashSet<Id> = plan.new_packs.iter().flatten().map(|l| l.pack).collect();
        let mut tally = Tally {
            done: 0,
            total: sources.iter().chain(&plan.doomed).map(size_of).sum(),
            report: on_progress,
        };
        // 1. New packs (and their .idx) with the live blobs of rewritten packs.
        let progress_text = format!("rewriting packs ({} partly used)", sources.len());
        let new_indexed = self.write_new_packs(plan, rng, &mut tally, &progress_text)?;
        // 2. Parity groups over the survivors of changed groups and the new packs.
        let mut new_iter = new_indexed.iter();
        let members: Vec<(Id, u64)> = plan
            .regroup
            .iter()
            .map(|(id, _)| {
                let id = id
                    .unwrap_or_else(|| new_iter.next().expect("one new pack per planned slot").id);
                (id, 0)
            })
            .collect();
        protect_packs(storage, self.keys(), &members, rng)?;
        // 3. The new index.
        tally.add(0, "writing the index")?;
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
        let notice = self.announce_deletions(plan, own, &copied, rng)?;
        self.delete_planned(plan, &written, &mut tally, &size_of)?;
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

    /// Step 1: write the planned new packs and their `.idx`, each blob checked before it is
    /// copied (prune must never spread damage into new packs).
    fn write_new_packs(
        &self,
        plan: &PrunePlan,
        rng: &mut dyn RandomSource,
        tally: &mut Tally<'_>,
        progress_text: &str,
    ) -> Result<Vec<IndexedPack>> {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let mut new_indexed: Vec<IndexedPack> = Vec::new();
        let mut source: Option<(Id, Vec<u8>)> = None;
        for locs in &plan.new_packs {
            let mut builder = PackBuilder::new();
            let mut bases = HashMap::new();
            for (i, loc) in locs.iter().enumerate() {
                // The bases of the next few blobs (a bounded number held at once).
                if i % BLOBS_PER_BASE_READ == 0 {
                    let next = &locs[i..locs.len().min(i + BLOBS_PER_BASE_READ)];
                    bases = self.read_bases_of(plan, next);
                }
                if source.as_ref().is_none_or(|(id, _)| *id != loc.pack) {
                    let bytes = storage.get(&pack_key(&loc.pack))?;
                    tally.add(bytes.len() as u64, progress_text)?;
                    source = Some((loc.pack, bytes));
                }
                let (_, bytes) = source.as_ref().expect("just loaded");
                let e = &loc.entry;
                let stored = bytes
                    .get(e.offset as usize..(e.offset + e.stored_len) as usize)
                    .ok_or_else(|| Error::corruption(format!("pack {}", loc.pack), "truncated"))?;
                let base = match e.bases() {
                    Some(b) => Some(
                        b.prefix(|id| bases.get(id).map(|p| p.as_slice()))
                            .ok_or_else(|| {
                                Error::corruption(
                                    format!("chunk {}", e.id),
                                    "a base it needs cannot be read; run verify, then repair",
                                )
                            })?,
                    ),
                    None => None,
                };
                decode_blob(keys, loc, stored, base.as_deref())?;
                builder.add(
                    e.id,
                    stored,
                    e.raw_len as usize,
                    e.compression,
                    e.kind,
                    e.extra,
                );
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
        Ok(new_indexed)
    }

    /// The plaintexts of the bases the deltas among `locs` need (and theirs, …), read where
    /// the plan found them; one that cannot be read is left out (the delta needing it is then
    /// not copied: the prune stops before deleting anything).
    fn read_bases_of(&self, plan: &PrunePlan, locs: &[Location]) -> HashMap<Id, Arc<Vec<u8>>> {
        let mut seen = HashSet::new();
        let base_locs: Vec<Location> = locs
            .iter()
            .flat_map(|l| l.entry.base_ids())
            .filter(|b| seen.insert(*b))
            .filter_map(|b| plan.bases.get(&b).copied())
            .collect();
        if base_locs.is_empty() {
            return HashMap::new();
        }
        read_with_bases(
            self.storage(),
            self.keys(),
            &base_locs,
            |id| plan.bases.get(id).copied(),
            true,
            false,
        )
        .plain
    }

    /// Announce the deletions (a notice), then look for snapshots written since the plan (an
    /// ingest whose lock this prune judged stale, or that started without seeing our lock)
    /// and check that our lock is still ours. Returns the notice; on any doubt, withdraws it
    /// and fails with nothing deleted.
    fn announce_deletions(
        &self,
        plan: &PrunePlan,
        own: &HeldLock,
        copied: &HashSet<Id>,
        rng: &mut dyn RandomSource,
    ) -> Result<Option<String>> {
        let storage: &dyn Storage = self.storage();
        let notice = match plan.doomed.is_empty() {
            true => None,
            false => Some(write_notice(
                storage,
                self.keys(),
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
        self.check_new_snapshots(plan, copied).map_err(withdraw)?;
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
        Ok(notice)
    }

    /// Steps 4–7: snapshots, old index files (but those just `written`), replaced groups,
    /// orphan parity shards, dead packs (reporting progress), orphan `.idx` files.
    fn delete_planned(
        &self,
        plan: &PrunePlan,
        written: &[String],
        tally: &mut Tally<'_>,
        size_of: &dyn Fn(&Id) -> u64,
    ) -> Result<()> {
        let storage: &dyn Storage = self.storage();
        for id in &plan.removed {
            // The copy first: a copy without its manifest only ever means a lost manifest.
            delete_if_present(storage, &crate::snapshot::snapshot_copy_key(id))?;
            delete_if_present(storage, &snapshot_key(id))?;
        }
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
            // Asked to stop: the packs left are unindexed garbage, and stay announced (an
            // ingest that loaded the old index must not reuse them); the next prune deletes
            // them and then the notice.
            tally.add(
                size_of(p),
                &format!("deleted {} of {} unused packs", i + 1, plan.doomed.len()),
            )?;
        }
        tally.done = tally.total;
        tally.add(0, "done")?;
        for p in &plan.orphan_idx {
            delete_if_present(storage, &idx_key(p))?;
        }
        Ok(())
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
                    let ids =
                        read_chunk_list(self.storage(), self.keys(), &view, list).map_err(|e| {
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
}
