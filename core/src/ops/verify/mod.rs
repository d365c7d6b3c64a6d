//! Verification: three levels, each finding every kind of damage it can see.
//!
//! - quick: index files, snapshot manifests and chunk lists decode; every referenced chunk is
//!   indexed; every indexed pack exists with its indexed size; every parity group is complete
//!   and every indexed pack belongs to one.
//! - standard: plus every pack read whole: its SHA-256 matches its id, its header matches the
//!   index, its `.idx` matches its header; every parity shard read: its SHA-256 matches its id.
//! - full: plus every blob decrypted, decompressed and re-hashed, and every group's parity
//!   recomputed from its members.
//!
//! Problems are collected as [`Finding`]s (never a panic or an early return); only a storage
//! that cannot even be listed makes verify fail as a whole.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::blob::{decode_blob, decode_chunk_list};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{base_closure, pack_key};
use crate::parity::{load_groups, Group};
use crate::progress::OnProgress;
use crate::repo::Repository;
use crate::scan::{list_packs, read_index_view, IndexView};
use crate::snapshot::{decode_snapshot, snapshot_copy_key, snapshot_key, Item, Snapshot};
use crate::storage::{Storage, StorageError};

mod checker;
mod packs;

use checker::Checker;
/// How deep to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VerifyLevel {
    /// Metadata and presence only.
    Quick,
    /// Plus pack checksums and headers.
    Standard,
    /// Plus every chunk and every parity shard recomputed.
    Full,
}

impl VerifyLevel {
    /// Parse `quick`, `standard` or `full`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quick" => Some(VerifyLevel::Quick),
            "standard" => Some(VerifyLevel::Standard),
            "full" => Some(VerifyLevel::Full),
            _ => None,
        }
    }
}

/// The kind of a [`Finding`]; serialised (JSON, Python, JS) as its snake_case name, e.g.
/// `pack_missing`. The level that can first see each kind is given in parentheses (quick
/// when not said).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An index file does not decode.
    Index,
    /// A snapshot manifest does not decode, or an item's chunk lists disagree with its chunk count.
    Snapshot,
    /// A chunk or chunk list a snapshot references is in no index file.
    ChunkMissing,
    /// A chunk list does not decode or its length is not a multiple of 32.
    ChunkList,
    /// An indexed pack is not in storage.
    PackMissing,
    /// A pack's size differs from its index entry or its parity group.
    PackSize,
    /// A parity group description does not decode.
    ParityGroup,
    /// A pack a parity group protects is gone and no index lists it.
    ParityMemberMissing,
    /// A parity group's shard is missing.
    ParityMissing,
    /// A parity shard's size differs from its group description.
    ParitySize,
    /// An indexed pack belongs to no parity group.
    PackUnprotected,
    /// A parity shard does not hash to its id (standard), or does not match its intact
    /// members (full).
    ParityMismatch,
    /// A pack does not hash to its id (standard).
    PackChecksum,
    /// A pack's header does not decode or differs from the index (standard).
    PackHeader,
    /// An indexed pack has no `.idx` file (standard).
    IdxMissing,
    /// A pack's `.idx` does not decode or differs from its pack (standard).
    Idx,
    /// A blob does not decrypt, decompress or hash to its chunk id (full).
    ChunkCorrupt,
    /// A key file or its copy is missing or does not hash to its name.
    KeyFile,
    /// `config.json` or its sealed copy is missing, damaged, or differs from the other.
    Config,
    /// A file that is there cannot be read (an I/O error, a failing store): a pack, its
    /// `.idx`, a parity shard (standard). Damage to that file alone; repair writes it again.
    Unreadable,
}

impl FindingKind {
    /// Every kind, in the order verify can report them.
    pub const ALL: [FindingKind; 20] = [
        FindingKind::Index,
        FindingKind::Snapshot,
        FindingKind::ChunkMissing,
        FindingKind::ChunkList,
        FindingKind::PackMissing,
        FindingKind::PackSize,
        FindingKind::ParityGroup,
        FindingKind::ParityMemberMissing,
        FindingKind::ParityMissing,
        FindingKind::ParitySize,
        FindingKind::PackUnprotected,
        FindingKind::ParityMismatch,
        FindingKind::PackChecksum,
        FindingKind::PackHeader,
        FindingKind::IdxMissing,
        FindingKind::Idx,
        FindingKind::ChunkCorrupt,
        FindingKind::KeyFile,
        FindingKind::Config,
        FindingKind::Unreadable,
    ];

    /// The snake_case name (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Index => "index",
            FindingKind::Snapshot => "snapshot",
            FindingKind::ChunkMissing => "chunk_missing",
            FindingKind::ChunkList => "chunk_list",
            FindingKind::PackMissing => "pack_missing",
            FindingKind::PackSize => "pack_size",
            FindingKind::ParityGroup => "parity_group",
            FindingKind::ParityMemberMissing => "parity_member_missing",
            FindingKind::ParityMissing => "parity_missing",
            FindingKind::ParitySize => "parity_size",
            FindingKind::PackUnprotected => "pack_unprotected",
            FindingKind::ParityMismatch => "parity_mismatch",
            FindingKind::PackChecksum => "pack_checksum",
            FindingKind::PackHeader => "pack_header",
            FindingKind::IdxMissing => "idx_missing",
            FindingKind::Idx => "idx",
            FindingKind::ChunkCorrupt => "chunk_corrupt",
            FindingKind::KeyFile => "key_file",
            FindingKind::Config => "config",
            FindingKind::Unreadable => "unreadable",
        }
    }

    /// Whether an ingest or prune running at the same time can cause it for a moment: verify
    /// lists packs, reads the index and reads parity groups at different instants, so a pack
    /// uploaded, indexed or grouped in between looks missing, unindexed or unprotected, and a
    /// group an ingest extends in between (new shard and description, old ones deleted) looks
    /// as if its shard were missing. Such
    /// findings are reported only if a second look at the end confirms them.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FindingKind::PackMissing
                | FindingKind::ParityMemberMissing
                | FindingKind::PackUnprotected
                | FindingKind::ChunkMissing
                | FindingKind::ParityMissing
        )
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FindingKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One problem found, naming its object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The pack concerned, if any.
    pub pack: Option<String>,
    /// The chunk concerned, if any.
    pub chunk: Option<String>,
    /// The snapshot concerned, if any.
    pub snapshot: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

/// What verify looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyStats {
    /// Packs checked.
    pub packs_checked: u64,
    /// Distinct chunks checked (indexed at quick, decoded at full).
    pub chunks_checked: u64,
    /// Snapshots checked.
    pub snapshots_checked: u64,
    /// Bytes read from storage.
    pub bytes_read: u64,
    /// Parity groups checked.
    pub groups_checked: u64,
    /// Packs on storage that no index lists (left by an interrupted ingest; garbage, not damage).
    pub unindexed_packs: u64,
    /// Snapshot manifests and key files that are intact but have no copy (feature
    /// `metadata-copies`): a writer interrupted between the two files, or a deleted copy.
    /// Nothing is damaged; `repair` writes the copies.
    pub missing_copies: u64,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether nothing was found.
    pub ok: bool,
    /// Everything found.
    pub errors: Vec<Finding>,
    /// What was looked at.
    pub stats: VerifyStats,
}

/// What phase 1 found: the merged index, the packs in storage, and the indexed packs missing.
struct Scan {
    view: IndexView,
    present: HashMap<Id, u64>,
    idx_present: HashSet<Id>,
    missing: BTreeSet<Id>,
}

/// Phase 3: every indexed pack is present, with its indexed size.
fn check_presence(c: &mut Checker<'_>, scan: &Scan) {
    for id in &scan.missing {
        c.find(
            FindingKind::PackMissing,
            Some(id),
            None,
            None,
            format!("pack {id} is indexed but missing"),
        );
    }
    for (id, (size, _)) in &scan.view.packs {
        if let Some(s) = scan.present.get(id).filter(|s| *s != size) {
            c.find(
                FindingKind::PackSize,
                Some(id),
                None,
                None,
                format!("pack {id} is {s} bytes, the index says {size}"),
            );
        }
    }
}

/// What to verify and whom to tell: [`VerifyOptions::new`], then the setters.
pub struct VerifyOptions<'a> {
    /// How deep.
    pub level: VerifyLevel,
    /// Sees each finding as it is made.
    pub on_error: Option<&'a mut dyn FnMut(&Finding)>,
    /// Sees progress: the fraction done and the bytes read so far (no total).
    pub on_progress: Option<OnProgress<'a>>,
}

impl<'a> VerifyOptions<'a> {
    /// Verify at `level`, telling no one along the way.
    pub fn new(level: VerifyLevel) -> Self {
        VerifyOptions {
            level,
            on_error: None,
            on_progress: None,
        }
    }

    /// Tell `f` each finding as it is made.
    pub fn on_error(mut self, f: &'a mut dyn FnMut(&Finding)) -> Self {
        self.on_error = Some(f);
        self
    }

    /// Tell `f` the progress (see [`crate::progress`]).
    pub fn on_progress(mut self, f: OnProgress<'a>) -> Self {
        self.on_progress = Some(f);
        self
    }
}

impl<S: Storage> Repository<S> {
    /// Verify the repository at `options.level`. Damage is collected as findings in the
    /// report (and told to `options.on_error` as found); an error `options.on_progress`
    /// returns (`Cancelled`: a signal arrived) stops verify at once and is returned.
    ///
    /// # Errors
    /// Damage is reported as findings, not errors. [`Error::Storage`]
    /// when storage cannot be listed or read (`Archived` for a pack in an archive class); the
    /// error `on_progress` returns.
    pub fn verify(&self, options: VerifyOptions<'_>) -> Result<VerifyReport> {
        let VerifyOptions {
            level,
            on_error,
            on_progress,
        } = options;
        let storage: &dyn Storage = self.storage();
        let keys = self.keys();
        let mut c = Checker {
            report: VerifyReport::default(),
            on_error,
            on_progress,
            // Metadata is all of a quick verify, and a tenth of a deeper one.
            metadata_share: if level == VerifyLevel::Quick {
                1.0
            } else {
                0.1
            },
            chunk_user: HashMap::new(),
            pack_users: HashMap::new(),
            untraced: Vec::new(),
            deferred: Vec::new(),
        };
        let scan = self.check_index(&mut c)?;
        self.check_config(&mut c)?;
        self.check_key_files(&mut c)?;
        self.check_snapshots(&mut c, &scan)?;
        check_presence(&mut c, &scan);
        let groups = self.check_parity_groups(&mut c, &scan)?;
        if level >= VerifyLevel::Standard {
            self.verify_packs(level, &mut c, &scan, &groups)?;
        } else {
            c.report.stats.packs_checked = scan.view.packs.len() as u64;
        }
        c.second_look(storage, keys)?;
        c.report.ok = c.report.errors.is_empty();
        c.progress(1.0)?;
        Ok(c.report)
    }

    /// Phase 1: every index file decodes; what is indexed, what is in storage, and which
    /// indexed packs are missing (reported in phase 3, once their users are known).
    fn check_index(&self, c: &mut Checker<'_>) -> Result<Scan> {
        let storage: &dyn Storage = self.storage();
        let mut bad_index = Vec::new();
        let (view, read) = read_index_view(storage, self.keys(), |key, e| {
            bad_index.push((key.to_string(), e))
        })?;
        c.report.stats.bytes_read += read;
        for (_, e) in bad_index {
            c.find_error(FindingKind::Index, None, None, &e);
        }
        let (present, idx_present) = list_packs(storage)?;
        c.report.stats.unindexed_packs = present
            .keys()
            .filter(|p| !view.packs.contains_key(p))
            .count() as u64;
        let missing = view
            .packs
            .keys()
            .filter(|id| !present.contains_key(id))
            .copied()
            .collect();
        Ok(Scan {
            view,
            present,
            idx_present,
            missing,
        })
    }

    /// With metadata copies, `config.json` and its sealed copy each hold the settings this
    /// handle opened with (a missing copy is counted, not reported, as for manifests).
    fn check_config(&self, c: &mut Checker<'_>) -> Result<()> {
        use crate::config::{CONFIG_COPY_KEY, CONFIG_KEY};
        use crate::repo::ConfigVersion;
        if !self.copies() {
            return Ok(());
        }
        let want = self.config();
        let versions = self.config_versions()?;
        let why = |v: &ConfigVersion, other: &str| match v {
            ConfigVersion::Read(_) => format!("it holds other settings than {other}"),
            v => v.describe(),
        };
        let copy_ok = versions.copy.holds(want);
        if !versions.file.holds(want) {
            let mut what = match &versions.file {
                ConfigVersion::Read(_) => {
                    "it differs from its sealed copy, which authenticates".to_string()
                }
                v => v.describe(),
            };
            if copy_ok {
                what.push_str(" (its sealed copy is intact: repair rewrites config.json from it)");
            }
            c.find(
                FindingKind::Config,
                None,
                None,
                None,
                format!("{CONFIG_KEY}: {what}"),
            );
        }
        match &versions.copy {
            ConfigVersion::Missing if versions.file.holds(want) => {
                c.report.stats.missing_copies += 1
            }
            ConfigVersion::Missing => {}
            _ if copy_ok => {}
            v => c.find(
                FindingKind::Config,
                None,
                None,
                None,
                format!(
                    "{CONFIG_COPY_KEY}: {} (repair writes it again)",
                    why(v, CONFIG_KEY)
                ),
            ),
        }
        Ok(())
    }

    /// Every key file, and with metadata copies its copy, hashes to its name. A copy missing
    /// while the key file is intact is counted (an interrupted writer leaves that), not
    /// reported.
    fn check_key_files(&self, c: &mut Checker<'_>) -> Result<()> {
        use crate::keyfile::{key_copy_key, key_versions, Version};
        let copies = self.copies();
        for v in key_versions(self.storage(), copies)? {
            let other_ok = |x: &Version| matches!(x, Version::Intact(_));
            let note = |ok: bool| {
                if ok {
                    " (its other copy is intact: repair restores this one)"
                } else {
                    ""
                }
            };
            if !other_ok(&v.file) && (copies || !v.file.is_missing()) {
                let n = note(other_ok(&v.copy));
                c.find(
                    FindingKind::KeyFile,
                    None,
                    None,
                    None,
                    format!("key file {}: {}{n}", v.key, v.file.describe()),
                );
            }
            if !copies {
                continue;
            }
            match &v.copy {
                Version::Intact(_) => {}
                Version::Missing if other_ok(&v.file) => c.report.stats.missing_copies += 1,
                x => {
                    let n = note(other_ok(&v.file));
                    c.find(
                        FindingKind::KeyFile,
                        None,
                        None,
                        None,
                        format!(
                            "key file copy {}: {}{n}",
                            key_copy_key(&v.key),
                            x.describe()
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    /// Phase 2: every snapshot manifest decodes, its chunk lists decode, and every chunk they
    /// name is indexed; records which snapshots use which pack.
    fn check_snapshots(&self, c: &mut Checker<'_>, scan: &Scan) -> Result<()> {
        let storage: &dyn Storage = self.storage();
        let mut referenced = HashSet::new();
        let ids = self.snapshot_ids()?;
        let copies = self.copies();
        let snapshot_total = ids.len().max(1) as f64;
        for sid in ids {
            c.report.stats.snapshots_checked += 1;
            c.progress(
                c.metadata_share * c.report.stats.snapshots_checked as f64 / snapshot_total,
            )?;
            // The manifest and (feature `metadata-copies`) its copy, each checked on its own:
            // either may be lost while the other serves.
            let mut read = |key: &str| -> Result<Option<std::result::Result<Snapshot, Error>>> {
                match storage.get(key) {
                    Ok(d) => {
                        c.report.stats.bytes_read += d.len() as u64;
                        Ok(Some(decode_snapshot(self.keys(), sid, &d)))
                    }
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(e @ StorageError::Archived { .. }) => Err(e.into()),
                    // Cannot be read (an I/O error): damage to this file, reported as such.
                    Err(e) => Ok(Some(Err(Error::corruption(
                        format!("snapshot {sid}"),
                        format!("{key} cannot be read: {e}"),
                    )))),
                }
            };
            let primary = read(&snapshot_key(&sid))?;
            let copy = if copies {
                read(&snapshot_copy_key(&sid))?
            } else {
                None
            };
            let copy_ok = matches!(copy, Some(Ok(_)));
            let serves = |other_ok: bool| {
                if other_ok {
                    " (the other copy is intact: repair restores this one)"
                } else {
                    ""
                }
            };
            match &primary {
                Some(Err(e)) => {
                    let note = serves(copy_ok);
                    c.find(
                        FindingKind::Snapshot,
                        None,
                        None,
                        Some(&sid),
                        format!("{e}{note}"),
                    )
                }
                None if copies => c.find(
                    FindingKind::Snapshot,
                    None,
                    None,
                    Some(&sid),
                    format!(
                        "snapshot {sid}: its manifest {} is missing{}",
                        snapshot_key(&sid),
                        serves(copy_ok)
                    ),
                ),
                _ => {}
            }
            let primary_ok = matches!(primary, Some(Ok(_)));
            if copies {
                match &copy {
                    Some(Err(e)) => {
                        let note = serves(primary_ok);
                        c.find(
                            FindingKind::Snapshot,
                            None,
                            None,
                            Some(&sid),
                            format!("copy {}: {e}{note}", snapshot_copy_key(&sid)),
                        )
                    }
                    // Not damage while the manifest reads: a writer interrupted between the
                    // manifest and its copy leaves this (counted; repair writes the copy).
                    None if primary_ok => c.report.stats.missing_copies += 1,
                    None => c.find(
                        FindingKind::Snapshot,
                        None,
                        None,
                        Some(&sid),
                        format!(
                            "snapshot {sid}: the copy of its manifest, {}, is missing",
                            snapshot_copy_key(&sid),
                        ),
                    ),
                    Some(Ok(_)) => {}
                }
            }
            let snap = match (primary, copy) {
                (Some(Ok(s)), _) | (_, Some(Ok(s))) => s,
                _ => continue,
            };
            for item in &snap.manifest.items {
                self.check_item(c, scan, sid, item, &mut referenced)?;
            }
        }
        c.report.stats.chunks_checked = referenced.len() as u64;
        Ok(())
    }

    /// One item of snapshot `sid`: its chunk lists, the chunks they name, and their count.
    fn check_item(
        &self,
        c: &mut Checker<'_>,
        scan: &Scan,
        sid: Id,
        item: &Item,
        referenced: &mut HashSet<Id>,
    ) -> Result<()> {
        let view = &scan.view;
        let mut count = 0u64;
        let mut lists_read = true;
        for list_id in &item.chunk_lists {
            let Some(loc) = view.blobs.get(list_id) else {
                c.find(
                    FindingKind::ChunkMissing,
                    None,
                    Some(list_id),
                    Some(&sid),
                    format!(
                        "chunk list {list_id} of item {:?} is not indexed",
                        item.name
                    ),
                );
                lists_read = false;
                continue;
            };
            c.used_by(sid, *list_id, Some(loc.pack));
            if scan.missing.contains(&loc.pack) {
                // Reported as pack_missing: one finding per damaged object.
                lists_read = false;
                continue;
            }
            let raw = self
                .storage()
                .get_range(
                    &pack_key(&loc.pack),
                    loc.entry.offset as u64,
                    loc.entry.stored_len as u64,
                )
                .map_err(Error::from)
                .and_then(|b| {
                    c.report.stats.bytes_read += b.len() as u64;
                    decode_blob(self.keys(), loc, &b, None)
                });
            let ids = match raw.map(|r| decode_chunk_list(&r)) {
                Ok(Ok(ids)) => ids,
                Ok(Err(why)) => {
                    c.find(
                        FindingKind::ChunkList,
                        Some(&loc.pack),
                        Some(list_id),
                        Some(&sid),
                        format!("chunk list {why}"),
                    );
                    lists_read = false;
                    continue;
                }
                // Intact but in an archive class: verify cannot go on without it, and it is
                // no damage.
                Err(e @ Error::Storage(StorageError::Archived { .. })) => return Err(e),
                Err(e) => {
                    c.find(
                        FindingKind::ChunkList,
                        Some(&loc.pack),
                        Some(list_id),
                        Some(&sid),
                        e.to_string(),
                    );
                    lists_read = false;
                    continue;
                }
            };
            for id in ids {
                count += 1;
                let loc = view.blobs.get(&id);
                c.used_by(sid, id, loc.map(|l| l.pack));
                // A delta needs its bases (and theirs): the snapshot uses their packs too.
                let bases = match loc.and_then(|l| l.entry.bases()) {
                    Some(_) => base_closure([id], |x| view.blobs.get(x)?.entry.bases()),
                    None => Vec::new(),
                };
                for b in &bases {
                    c.used_by(sid, *b, view.blobs.get(b).map(|l| l.pack));
                }
                if !referenced.insert(id) {
                    continue;
                }
                if loc.is_none() {
                    c.find(
                        FindingKind::ChunkMissing,
                        None,
                        Some(&id),
                        Some(&sid),
                        format!("chunk {id} of item {:?} is not indexed", item.name),
                    );
                } else if bases.contains(&id) {
                    c.find(
                        FindingKind::ChunkCorrupt,
                        loc.map(|l| l.pack).as_ref(),
                        Some(&id),
                        Some(&sid),
                        format!(
                            "delta chunk {id} of item {:?} cannot be decoded: its bases lead \
                             back to it (a damaged pack header or index)",
                            item.name
                        ),
                    );
                } else if let Some(b) = bases.into_iter().find(|b| !view.blobs.contains_key(b)) {
                    c.find(
                        FindingKind::ChunkMissing,
                        None,
                        Some(&b),
                        Some(&sid),
                        format!(
                            "chunk {b}, a base delta chunk {id} of item {:?} needs, is not indexed",
                            item.name
                        ),
                    );
                }
            }
        }
        if !lists_read && !c.untraced.contains(&sid) {
            c.untraced.push(sid);
        }
        if lists_read && count != item.chunk_count {
            c.find(
                FindingKind::Snapshot,
                None,
                None,
                Some(&sid),
                format!(
                    "item {:?} lists {count} chunks, its manifest says {}",
                    item.name, item.chunk_count
                ),
            );
        }
        Ok(())
    }

    /// Phase 4: every parity group decodes, its members are present with their sizes, its
    /// shard is present with its size, and every indexed pack belongs to a group. Returns the
    /// groups for the pack phase.
    fn check_parity_groups(&self, c: &mut Checker<'_>, scan: &Scan) -> Result<Vec<Group>> {
        let storage: &dyn Storage = self.storage();
        let (groups, bad_groups) = load_groups(storage, self.keys())?;
        for (_, e) in &bad_groups {
            c.find_error(FindingKind::ParityGroup, None, None, e);
        }
        let mut protected = HashSet::new();
        let parity_sizes: HashMap<Id, u64> = crate::parity::list_parity(storage)?
            .into_iter()
            .filter_map(|(k, s)| match crate::layout::classify(&k)? {
                (crate::layout::Kind::Parity, Some(id)) => Some((id, s)),
                _ => None,
            })
            .collect();
        for g in &groups {
            c.report.stats.groups_checked += 1;
            for m in &g.desc.members {
                protected.insert(m.pack);
                match scan.present.get(&m.pack) {
                    None if !scan.view.packs.contains_key(&m.pack) => c.find(
                        FindingKind::ParityMemberMissing,
                        Some(&m.pack),
                        None,
                        None,
                        format!("pack {} of parity group {} is missing", m.pack, g.key),
                    ),
                    Some(s) if *s != m.size => c.find(
                        FindingKind::PackSize,
                        Some(&m.pack),
                        None,
                        None,
                        format!(
                            "pack {} is {s} bytes, its parity group says {}",
                            m.pack, m.size
                        ),
                    ),
                    _ => {}
                }
            }
            match parity_sizes.get(&g.desc.parity) {
                None => c.find(
                    FindingKind::ParityMissing,
                    None,
                    None,
                    None,
                    format!(
                        "parity shard {} of group {} is missing",
                        g.desc.parity, g.key
                    ),
                ),
                Some(s) if *s != g.desc.shard_len => c.find(
                    FindingKind::ParitySize,
                    None,
                    None,
                    None,
                    format!(
                        "parity shard {} is {s} bytes, expected {}",
                        g.desc.parity, g.desc.shard_len
                    ),
                ),
                Some(_) => {}
            }
        }
        for id in scan.view.packs.keys() {
            if !protected.contains(id) {
                c.find(
                    FindingKind::PackUnprotected,
                    Some(id),
                    None,
                    None,
                    format!("pack {id} belongs to no parity group"),
                );
            }
        }
        Ok(groups)
    }
}
