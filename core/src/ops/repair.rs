//! `repair`: remove stale locks, rebuild missing or damaged packs from their parity group,
//! rewrite damaged parity, protect unprotected packs, rebuild the index, move legacy parity
//! groups, and name what could not be saved with the snapshots it affects.

use crate::upkeep::ReindexReport;
use crate::upkeep::{delete_if_present, protect_packs};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::crypto::{random_bytes, RandomSource};
use crate::error::Result;
use crate::id::Id;
use crate::layout::{self};
use crate::lock::{LockInfo, StaleCheck};
use crate::pack::{base_closure, pack_key};
use crate::parity::{load_groups, rebuild_member, Group, ParityBuilder};
use crate::repo::Repository;
use crate::scan::{list_packs, read_chunk_list, read_index_view, IndexView};
use crate::snapshot::Snapshot;
use crate::storage::{put_exact, Storage, StorageError};

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
    /// Metadata files (storage keys) that were missing or damaged and were written again
    /// from their intact copy (docs/FORMAT.md, "Metadata copies").
    pub metadata_restored: Vec<String>,
    /// Copies written for metadata files that had none (a repository made before metadata
    /// copies, which repair then turns on; or a writer that died between a file and its copy).
    pub copies_added: u64,
    /// Snapshots whose manifest and copy both cannot be read: lost (`forget` removes them).
    pub lost_snapshots: Vec<LostSnapshot>,
    /// Key files (storage keys) whose every version is damaged: that passphrase no longer
    /// opens the repository (the others still do).
    pub lost_key_files: Vec<String>,
}

/// A snapshot repair could not bring back: neither its manifest nor a copy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostSnapshot {
    /// The snapshot id.
    pub snapshot: Id,
    /// What is wrong with its manifest and its copy.
    pub reason: String,
}

/// Whether packs are intact (present with their size and hashing to their id), each read at
/// most once.
struct PackCheck {
    present: HashMap<Id, u64>,
    intact: HashMap<Id, bool>,
}

impl PackCheck {
    fn intact(&mut self, storage: &dyn Storage, id: &Id, size: u64) -> Result<bool> {
        if let Some(ok) = self.intact.get(id) {
            return Ok(*ok);
        }
        let ok = self.present.get(id) == Some(&size)
            && match storage.get(&pack_key(id)) {
                Ok(d) => Id::sha256(&d) == *id,
                Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
                // Missing, or cannot be read (an I/O error): damaged, rebuilt from parity.
                Err(_) => false,
            };
        self.intact.insert(*id, ok);
        Ok(ok)
    }
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

impl<S: Storage> Repository<S> {
    /// Repair what can be repaired: remove stale locks, rebuild missing or damaged packs from
    /// their parity group, rewrite damaged parity, protect unprotected packs, rebuild the index,
    /// and name what could not be saved with the snapshots it affects.
    ///
    /// # Errors
    /// [`Error::Locked`](crate::Error::Locked); [`Error::Storage`](crate::Error::Storage) (`Archived` for an object in an archive class). What
    /// cannot be saved is reported in [`RepairReport::unrecoverable`], not as an error.
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
        self.repair_manifests(&mut report)?;
        // What the index knew before, to name the blobs of packs that are gone.
        let (old_view, _) = read_index_view(storage, keys, |_, _| {})?;
        let (present, _) = list_packs(storage)?;
        let mut packs = PackCheck {
            present,
            intact: HashMap::new(),
        };
        let mut lost = self.repair_groups(&mut packs, &mut report, rng)?;

        // The index, from what is on storage now.
        report.reindex = self.rebuild_index(rng)?;
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
            if packs.intact(storage, id, *size)? {
                unprotected.push((*id, *size));
            } else {
                lost.entry(*id)
                    .or_insert_with(|| "damaged and in no parity group".into());
            }
        }
        report.groups_written += protect_packs(storage, keys, &unprotected, rng)?;
        // Unreadable group descriptions protect nothing (their packs were just regrouped):
        // removed, whatever is left of their content (named as ours: `load_groups` lists only
        // such names). Left in place, verify would report them again and again.
        for (key, _) in &bad_groups {
            delete_if_present(storage, key)?;
        }
        report.parity_groups_moved = move_legacy_groups(storage, &groups)?;
        report.foreign_files = layout::foreign(storage)?;
        report.unrecoverable = self.name_affected_snapshots(lost, &old_view)?;
        Ok(report)
    }

    /// Snapshot manifests and their copies: a missing or damaged one is written again from
    /// the other; one with no copy gets one. In a repository without metadata copies, every
    /// readable manifest is copied, and then `config.json` gains the `metadata-copies`
    /// feature (from then on older binaries, whose prune would leave copies behind, may not
    /// write). Snapshots whose manifest and copy both fail are reported lost.
    fn repair_manifests(&self, report: &mut RepairReport) -> Result<()> {
        let storage: &dyn Storage = self.storage();
        let had_copies = self.copies();
        let read = |key: &str, id: Id| -> Result<Option<(Vec<u8>, Option<String>)>> {
            match storage.get(key) {
                Ok(d) => {
                    let bad = crate::snapshot::decode_snapshot(self.keys(), id, &d)
                        .err()
                        .map(|e| e.to_string());
                    Ok(Some((d, bad)))
                }
                Err(StorageError::NotFound(_)) => Ok(None),
                Err(e @ StorageError::Archived { .. }) => Err(e.into()),
                // One file that cannot be read (an I/O error) is damage to that file: written
                // again from the other version, as a damaged one is.
                Err(e) => Ok(Some((Vec::new(), Some(format!("unreadable: {e}"))))),
            }
        };
        if !had_copies {
            // Copies made while the feature was on, then left by a program without it (its
            // prune deleted the manifest, not the copy): they must not bring a snapshot back.
            for (key, _) in storage.list(crate::snapshot::SNAPSHOT_COPY_PREFIX)? {
                let orphan = crate::snapshot::snapshot_id_of_copy_key(&key).is_some_and(|id| {
                    matches!(
                        storage.get(&crate::snapshot::snapshot_key(&id)),
                        Err(StorageError::NotFound(_))
                    )
                });
                if orphan {
                    delete_if_present(storage, &key)?;
                }
            }
            for (key, _) in storage.list(crate::keyfile::KEY_COPY_PREFIX)? {
                let original = format!(
                    "{}{}",
                    crate::keyfile::KEYS_PREFIX,
                    &key[crate::keyfile::KEY_COPY_PREFIX.len()..]
                );
                if matches!(storage.get(&original), Err(StorageError::NotFound(_))) {
                    delete_if_present(storage, &key)?;
                }
            }
        }
        for id in self.snapshot_ids()? {
            self.check_interrupt()?;
            let primary_key = crate::snapshot::snapshot_key(&id);
            let copy_key = crate::snapshot::snapshot_copy_key(&id);
            let primary = read(&primary_key, id)?;
            let copy = read(&copy_key, id)?;
            let good = |f: &Option<(Vec<u8>, Option<String>)>| match f {
                Some((d, None)) => Some(d.clone()),
                _ => None,
            };
            match (good(&primary), good(&copy)) {
                (Some(_), Some(_)) => {}
                (Some(d), None) => {
                    put_exact(storage, &copy_key, &d)?;
                    if had_copies && copy.is_some() {
                        report.metadata_restored.push(copy_key);
                    } else {
                        report.copies_added += 1;
                    }
                }
                (None, Some(d)) => {
                    put_exact(storage, &primary_key, &d)?;
                    report.metadata_restored.push(primary_key);
                }
                (None, None) => {
                    let what = |f: &Option<(Vec<u8>, Option<String>)>| match f {
                        None => "missing".to_string(),
                        Some((_, why)) => why.clone().unwrap_or_default(),
                    };
                    report.lost_snapshots.push(LostSnapshot {
                        snapshot: id,
                        reason: format!(
                            "its manifest: {}; its copy: {} (nothing of it can be read: \
                             `forget {id}` removes it)",
                            what(&primary),
                            what(&copy)
                        ),
                    });
                }
            }
        }
        self.repair_key_files(report)?;
        if had_copies {
            self.repair_config(report)?;
        } else {
            // The config's sealed copy, with the feature in it and in config.json.
            self.enable_copies()?;
            report.copies_added += 1;
        }
        Ok(())
    }

    /// `config.json` and its sealed copy: whichever is missing, damaged or differs from the
    /// settings as stored (the copy when it opens: it authenticates) is written again.
    fn repair_config(&self, report: &mut RepairReport) -> Result<()> {
        use crate::config::{CONFIG_COPY_KEY, CONFIG_KEY};
        use crate::repo::ConfigVersion;
        let stored = self.stored_config()?;
        let versions = self.config_versions()?;
        let (primary_ok, copy_ok) = (versions.file.holds(&stored), versions.copy.holds(&stored));
        if !(primary_ok && copy_ok) {
            self.write_config(&stored)?;
            if !copy_ok {
                if versions.copy == ConfigVersion::Missing {
                    report.copies_added += 1;
                } else {
                    report.metadata_restored.push(CONFIG_COPY_KEY.to_string());
                }
            }
            if !primary_ok {
                report.metadata_restored.push(CONFIG_KEY.to_string());
            }
        }
        Ok(())
    }

    /// Key files and their copies, as [`Self::repair_manifests`] does manifests: a missing or
    /// damaged version is written again from the intact one (both must hash to the name).
    fn repair_key_files(&self, report: &mut RepairReport) -> Result<()> {
        use crate::keyfile::{key_copy_key, key_versions, Version};
        let storage: &dyn Storage = self.storage();
        for v in key_versions(storage, true)? {
            self.check_interrupt()?;
            let copy_key = key_copy_key(&v.key);
            let Some(good) = v.intact().map(<[u8]>::to_vec) else {
                if !v.file.is_missing() || !v.copy.is_missing() {
                    report.lost_key_files.push(v.key);
                }
                continue;
            };
            if !matches!(v.file, Version::Intact(_)) {
                put_exact(storage, &v.key, &good)?;
                report.metadata_restored.push(v.key.clone());
            }
            match v.copy {
                Version::Intact(_) => {}
                Version::Missing => {
                    put_exact(storage, &copy_key, &good)?;
                    report.copies_added += 1;
                }
                _ => {
                    put_exact(storage, &copy_key, &good)?;
                    report.metadata_restored.push(copy_key);
                }
            }
        }
        Ok(())
    }

    /// Rebuild every pack that is missing or damaged from its parity group where one shard
    /// suffices, and recompute damaged parity of intact groups. Returns what could not be
    /// rebuilt, with why.
    fn repair_groups(
        &self,
        packs: &mut PackCheck,
        report: &mut RepairReport,
        rng: &mut dyn RandomSource,
    ) -> Result<BTreeMap<Id, String>> {
        let storage: &dyn Storage = self.storage();
        let (groups, _) = load_groups(storage, self.keys())?;
        let mut lost: BTreeMap<Id, String> = BTreeMap::new();
        let mut repaired = BTreeSet::new();
        for g in &groups {
            self.check_interrupt()?;
            let mut bad = Vec::new();
            for (i, m) in g.desc.members.iter().enumerate() {
                if !repaired.contains(&m.pack) && !packs.intact(storage, &m.pack, m.size)? {
                    bad.push(i);
                }
            }
            let parity_ok = match storage.get(&g.parity_key()) {
                Ok(p) => Id::sha256(&p) == g.desc.parity,
                Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
                // Missing or unreadable: computed again when the members are intact.
                Err(_) => false,
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
                    b.store(storage, self.keys(), random_bytes(rng))?;
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
        Ok(lost)
    }

    /// What is `lost`, each pack with the snapshots that need it (found through the index as
    /// it was before repair, `old_view`).
    fn name_affected_snapshots(
        &self,
        lost: BTreeMap<Id, String>,
        old_view: &IndexView,
    ) -> Result<Vec<Unrecoverable>> {
        if lost.is_empty() {
            return Ok(Vec::new());
        }
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
            for pack in self.packs_needed_by(&snap, old_view, &blob_pack) {
                affected.entry(pack).or_default().insert(sid);
            }
        }
        Ok(lost
            .into_iter()
            .map(|(pack, reason)| Unrecoverable {
                pack,
                reason,
                snapshots: affected
                    .remove(&pack)
                    .map(|s| s.into_iter().collect())
                    .unwrap_or_default(),
            })
            .collect())
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
                let Ok(ids) = read_chunk_list(self.storage(), self.keys(), view, list) else {
                    continue;
                };
                for id in ids {
                    // A delta needs its bases, and theirs: a lost pack holding one of them
                    // costs this snapshot too.
                    let closure = base_closure([id], |x| view.blobs.get(x)?.entry.bases());
                    for c in std::iter::once(id).chain(closure) {
                        if let Some(p) = blob_pack.get(&c) {
                            needed.insert(*p);
                        }
                    }
                }
            }
        }
        needed
    }
}
