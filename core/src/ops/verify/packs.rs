//! The pack phase (standard and full): every pack read whole, group by group, its checksum,
//! header and `.idx` checked, at full every blob decoded on all cores and every group's parity
//! recomputed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::blob::decode_blob;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Location;
use crate::pack::{decode_idx, idx_key, pack_key, read_pack_entries, PackEntry};
use crate::parallel::par_map;
use crate::parity::{Group, ParityBuilder};
use crate::repo::Repository;
use crate::scan::read_with_bases;
use crate::storage::{Storage, StorageError};

use super::checker::Checker;
use crate::ops::verify::{FindingKind, Scan, VerifyLevel};

impl<S: Storage> Repository<S> {
    pub(super) fn verify_packs(
        &self,
        level: VerifyLevel,
        c: &mut Checker<'_>,
        scan: &Scan,
        groups: &[Group],
    ) -> Result<()> {
        let storage: &dyn Storage = self.storage();
        let (view, present) = (&scan.view, &scan.present);
        let mut checked = HashSet::new();
        let mut chunks = HashSet::new();
        let pack_total = present.len().max(1) as f64;
        // Group by group, so each member is read once for its own checks and for the parity.
        let mut order: Vec<(Option<&Group>, Vec<Id>)> = groups
            .iter()
            .map(|g| (Some(g), g.desc.members.iter().map(|m| m.pack).collect()))
            .collect();
        order.push((None, view.packs.keys().copied().collect()));
        for (group, members) in order {
            let mut parity =
                (level == VerifyLevel::Full && group.is_some()).then(ParityBuilder::new);
            let mut complete = true;
            let errors_before = c.report.errors.len();
            for pack in members {
                if !present.contains_key(&pack) {
                    complete = false;
                    continue;
                }
                let first_time = checked.insert(pack);
                if !first_time && parity.is_none() {
                    continue;
                }
                let data = match storage.get(&pack_key(&pack)) {
                    Ok(d) => d,
                    Err(StorageError::NotFound(_)) => {
                        complete = false;
                        continue;
                    }
                    Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
                    // One pack that cannot be read is damage to that pack: reported, and the
                    // others are still checked.
                    Err(e) => {
                        complete = false;
                        if first_time {
                            c.find(
                                FindingKind::Unreadable,
                                Some(&pack),
                                None,
                                None,
                                format!("pack {pack} cannot be read: {e}"),
                            );
                        }
                        continue;
                    }
                };
                c.report.stats.bytes_read += data.len() as u64;
                if let Some(p) = parity.as_mut() {
                    p.add(pack, &data);
                }
                if first_time {
                    c.report.stats.packs_checked += 1;
                    self.check_pack(level, c, scan, pack, &data, &mut chunks);
                    let share = c.metadata_share;
                    c.progress(share + (1.0 - share) * checked.len() as f64 / pack_total)?;
                }
            }
            let Some(g) = group else { continue };
            // The shard is named by its SHA-256, so every level that reads packs checks it too
            // (a damaged shard leaves its group unable to rebuild a lost pack); a missing one
            // is reported with the group's other checks.
            let stored = match storage.get(&g.parity_key()) {
                Ok(stored) => stored,
                Err(StorageError::NotFound(_)) => continue,
                Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
                Err(e) => {
                    c.find(
                        FindingKind::Unreadable,
                        None,
                        None,
                        None,
                        format!(
                            "parity shard {} of group {} cannot be read: {e}",
                            g.desc.parity, g.key
                        ),
                    );
                    continue;
                }
            };
            c.report.stats.bytes_read += stored.len() as u64;
            // A damaged member already explains a parity mismatch: only an intact group's
            // mismatch means the parity shard itself is damaged.
            let members_intact = complete && c.report.errors.len() == errors_before;
            let why = if Id::sha256(&stored) != g.desc.parity {
                Some("does not hash to its id (damaged; repair computes it again from the group's packs)")
            } else {
                match (parity, members_intact) {
                    (Some(p), true) => {
                        (p.finish().0 != stored).then_some("does not match its members")
                    }
                    _ => None,
                }
            };
            if let Some(why) = why {
                c.find(
                    FindingKind::ParityMismatch,
                    None,
                    None,
                    None,
                    format!("parity shard {} of group {} {why}", g.desc.parity, g.key),
                );
            }
        }
        if level == VerifyLevel::Full {
            c.report.stats.chunks_checked = chunks.len() as u64;
        }
        Ok(())
    }

    pub(super) fn check_pack(
        &self,
        level: VerifyLevel,
        c: &mut Checker<'_>,
        scan: &Scan,
        pack: Id,
        data: &[u8],
        chunks: &mut HashSet<Id>,
    ) {
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let (view, idx_present) = (&scan.view, &scan.idx_present);
        if Id::sha256(data) != pack {
            c.find(
                FindingKind::PackChecksum,
                Some(&pack),
                None,
                None,
                format!("pack {pack} does not hash to its id (damaged)"),
            );
        }
        let header = match read_pack_entries(keys, &pack.to_hex(), data) {
            Ok(h) => Some(h),
            Err(e) => {
                c.find_error(FindingKind::PackHeader, Some(&pack), None, &e);
                None
            }
        };
        let indexed = view.packs.get(&pack).map(|(_, e)| e.as_slice());
        if let (Some(h), Some(i)) = (&header, indexed) {
            if !same_entries(h, i) {
                c.find(
                    FindingKind::PackHeader,
                    Some(&pack),
                    None,
                    None,
                    format!("the header of pack {pack} does not match the index"),
                );
            }
        }
        if indexed.is_some() {
            if !idx_present.contains(&pack) {
                c.find(
                    FindingKind::IdxMissing,
                    Some(&pack),
                    None,
                    None,
                    format!("pack {pack} has no .idx file"),
                );
            } else {
                let key = idx_key(&pack);
                match storage.get(&key).map_err(Error::from).and_then(|d| {
                    c.report.stats.bytes_read += d.len() as u64;
                    decode_idx(keys, &key, &d)
                }) {
                    Ok((id, size, entries)) => {
                        let matches = id == pack
                            && size == data.len() as u64
                            && header.as_ref().is_none_or(|h| same_entries(h, &entries));
                        if !matches {
                            c.find(
                                FindingKind::Idx,
                                Some(&pack),
                                None,
                                None,
                                format!("{key} does not match its pack"),
                            );
                        }
                    }
                    Err(e) => c.find_error(FindingKind::Idx, Some(&pack), None, &e),
                }
            }
        }
        if level < VerifyLevel::Full {
            return;
        }
        // Decode every blob, from the header if readable, else from the index.
        let Some(entries) = header.as_deref().or(indexed) else {
            return;
        };
        chunks.extend(entries.iter().map(|e| e.id));
        // Blobs decode independently: on all cores where the build allows. A delta is decoded
        // against its bases, read from wherever they are; when one cannot be read, the delta
        // is not judged here (the base's own pack, or the snapshot phase, reports that). The
        // deltas go in groups, so that the bases held at once stay bounded.
        let (deltas, full): (Vec<PackEntry>, Vec<PackEntry>) =
            entries.iter().partition(|e| e.bases().is_some());
        let mut groups: Vec<Vec<PackEntry>> = vec![full];
        groups.extend(deltas.chunks(DELTAS_PER_GROUP).map(<[PackEntry]>::to_vec));
        for group in groups {
            self.check_blobs(scan, c, pack, data, group);
        }
    }

    /// Decode `entries` of `pack` (its bytes `data`), reporting those that fail.
    fn check_blobs(
        &self,
        scan: &Scan,
        c: &mut Checker<'_>,
        pack: Id,
        data: &[u8],
        entries: Vec<PackEntry>,
    ) {
        let keys = self.keys();
        let bases = self.read_bases(scan, &entries, c);
        let failures = par_map(entries, |e| {
            let loc = Location { pack, entry: e };
            let base = match e.bases() {
                Some(b) => Some(b.prefix(|id| bases.get(id).map(|p| p.as_slice()))?),
                None => None,
            };
            let start = e.offset as usize;
            data.get(start..start + e.stored_len as usize)
                .ok_or_else(|| {
                    Error::corruption(
                        format!("chunk {} in pack {pack}", e.id),
                        "lies past the end of the pack",
                    )
                })
                .and_then(|stored| decode_blob(keys, &loc, stored, base.as_deref()))
                .err()
                .map(|err| (e.id, err.to_string()))
        });
        for (id, message) in failures.into_iter().flatten() {
            c.find(
                FindingKind::ChunkCorrupt,
                Some(&pack),
                Some(&id),
                None,
                message,
            );
        }
    }
}

/// Deltas of one pack decoded together by full verify: their bases (up to two each, kept in
/// memory at once, with what decoding those needed freed as it goes) stay within ~32 MiB for
/// 256 KiB chunks.
const DELTAS_PER_GROUP: usize = 64;

impl<S: Storage> Repository<S> {
    /// The plaintexts of the bases the deltas among `entries` need (and theirs, …), read in
    /// coalesced ranged requests (issued at once) and decoded on all cores. A base that cannot
    /// be read is left out: its own pack, or the snapshot phase, reports it.
    fn read_bases(
        &self,
        scan: &Scan,
        entries: &[PackEntry],
        c: &mut Checker<'_>,
    ) -> HashMap<Id, Arc<Vec<u8>>> {
        let mut seen = HashSet::new();
        let locs: Vec<Location> = entries
            .iter()
            .flat_map(PackEntry::base_ids)
            .filter(|b| seen.insert(*b))
            .filter_map(|b| scan.view.blobs.get(&b).copied())
            .collect();
        if locs.is_empty() {
            return HashMap::new();
        }
        let read = read_with_bases(
            self.storage(),
            self.keys(),
            &locs,
            |id| scan.view.blobs.get(id).copied(),
            true,
            false,
        );
        c.report.stats.bytes_read += read.bytes_read;
        read.plain
    }
}

pub(super) fn same_entries(a: &[PackEntry], b: &[PackEntry]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by_key(|e| e.offset);
    b.sort_by_key(|e| e.offset);
    a == b
}
