//! Verification: three levels, each finding every kind of damage it can see.
//!
//! - quick: index files, snapshot manifests and chunk lists decode; every referenced chunk is
//!   indexed; every indexed pack exists with its indexed size; every parity group is complete
//!   and every indexed pack belongs to one.
//! - standard: plus every pack read whole: its SHA-256 matches its id, its header matches the
//!   index, its `.idx` matches its header.
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
use crate::index::Location;
use crate::pack::{decode_idx, idx_key, pack_key, read_pack_entries, PackEntry};
use crate::parallel::par_map;
use crate::parity::{load_groups, Group, ParityBuilder};
use crate::progress::{OnProgress, Progress};
use crate::repo::Repository;
use crate::scan::{list_packs, read_index_view, IndexView};
use crate::snapshot::{decode_snapshot, snapshot_id_of_key, Item, SNAPSHOT_PREFIX};
use crate::storage::{Storage, StorageError};

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
    /// A parity shard does not match its intact members (full).
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
}

impl FindingKind {
    /// Every kind, in the order verify can report them.
    pub const ALL: [FindingKind; 17] = [
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
        }
    }

    /// Whether an ingest or prune running at the same time can cause it for a moment: verify
    /// lists packs, reads the index and reads parity groups at different instants, so a pack
    /// uploaded, indexed or grouped in between looks missing, unindexed or unprotected. Such
    /// findings are reported only if a second look at the end confirms them.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FindingKind::PackMissing
                | FindingKind::ParityMemberMissing
                | FindingKind::PackUnprotected
                | FindingKind::ChunkMissing
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

struct Checker<'a> {
    report: VerifyReport,
    on_error: Option<&'a mut dyn FnMut(&Finding)>,
    on_progress: Option<OnProgress<'a>>,
    metadata_share: f64,
    /// The first snapshot (by id) referencing each chunk or chunk list.
    chunk_user: HashMap<Id, Id>,
    /// Per pack: the snapshots referencing a blob in it.
    pack_users: HashMap<Id, PackUsers>,
    /// Findings that another process's work in progress can explain (see
    /// [`FindingKind::is_transient`]):
    /// reported only if a second look at the end confirms them.
    deferred: Vec<Finding>,
}

/// How many snapshots use a pack, and the first few.
#[derive(Default)]
struct PackUsers {
    count: usize,
    last: Option<Id>,
    first: Vec<Id>,
}

/// Snapshots named in a finding about a pack.
const USERS_NAMED: usize = 5;

impl Checker<'_> {
    fn progress(&mut self, fraction: f64) -> Result<()> {
        let p = Progress {
            fraction,
            bytes: self.report.stats.bytes_read,
            total_bytes: None,
            message: "",
        };
        match self.on_progress.as_mut() {
            Some(report) => report(&p),
            None => Ok(()),
        }
    }

    fn tell(&mut self, f: &Finding) {
        if let Some(on_error) = self.on_error.as_mut() {
            on_error(f);
        }
    }

    /// Note that snapshot `sid` references blob `blob`, stored in `pack` (if indexed).
    /// Snapshots are checked one after another, so a pack counts each user once.
    fn used_by(&mut self, sid: Id, blob: Id, pack: Option<Id>) {
        self.chunk_user.entry(blob).or_insert(sid);
        if let Some(pack) = pack {
            let u = self.pack_users.entry(pack).or_default();
            if u.last != Some(sid) {
                u.last = Some(sid);
                u.count += 1;
                if u.first.len() < USERS_NAMED {
                    u.first.push(sid);
                }
            }
        }
    }

    /// Report a finding. One about damaged data that names no snapshot names the snapshots
    /// that need it: the chunk's first user, or those of the pack (up to five, and how many).
    fn find(
        &mut self,
        kind: FindingKind,
        pack: Option<&Id>,
        chunk: Option<&Id>,
        snapshot: Option<&Id>,
        message: impl Into<String>,
    ) {
        let mut message = message.into();
        let mut snapshot = snapshot.copied();
        if snapshot.is_none() {
            if let Some(user) = chunk.and_then(|c| self.chunk_user.get(c)) {
                snapshot = Some(*user);
            } else if let Some(u) = pack.and_then(|p| self.pack_users.get(p)) {
                snapshot = u.first.first().copied();
                let names: Vec<String> = u.first.iter().map(Id::to_hex).collect();
                let more = if u.count > u.first.len() { ", …" } else { "" };
                message = format!(
                    "{message}; needed by {} snapshot(s): {}{more}",
                    u.count,
                    names.join(", ")
                );
            }
        }
        let f = Finding {
            kind,
            pack: pack.map(Id::to_hex),
            chunk: chunk.map(Id::to_hex),
            snapshot: snapshot.as_ref().map(Id::to_hex),
            message,
        };
        if kind.is_transient() {
            self.deferred.push(f);
            return;
        }
        self.tell(&f);
        self.report.errors.push(f);
    }

    /// Report the deferred findings that still hold on a fresh look at the repository.
    fn second_look(&mut self, storage: &dyn Storage, keys: &crate::crypto::Keys) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let (view, _) = read_index_view(storage, keys, |_, _| {})?;
        let (present, _) = list_packs(storage)?;
        let (groups, _) = load_groups(storage, keys)?;
        let grouped: HashSet<Id> = groups
            .iter()
            .flat_map(|g| g.desc.members.iter().map(|m| m.pack))
            .collect();
        let id = |h: &Option<String>| h.as_deref().and_then(Id::from_hex);
        for f in std::mem::take(&mut self.deferred) {
            let holds = match (f.kind, id(&f.pack), id(&f.chunk)) {
                (FindingKind::PackMissing, Some(p), _) => {
                    !present.contains_key(&p) && view.packs.contains_key(&p)
                }
                (FindingKind::ParityMemberMissing, Some(p), _) => {
                    !present.contains_key(&p) && grouped.contains(&p)
                }
                (FindingKind::PackUnprotected, Some(p), _) => {
                    !grouped.contains(&p) && view.packs.contains_key(&p)
                }
                (FindingKind::ChunkMissing, _, Some(c)) => !view.blobs.contains_key(&c),
                _ => true,
            };
            if holds {
                self.tell(&f);
                self.report.errors.push(f);
            }
        }
        Ok(())
    }

    fn find_error(
        &mut self,
        kind: FindingKind,
        pack: Option<&Id>,
        snapshot: Option<&Id>,
        e: &Error,
    ) {
        self.find(kind, pack, None, snapshot, e.to_string());
    }
}

fn same_entries(a: &[PackEntry], b: &[PackEntry]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by_key(|e| e.offset);
    b.sort_by_key(|e| e.offset);
    a == b
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
            deferred: Vec::new(),
        };
        let scan = self.check_index(&mut c)?;
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

    /// Phase 2: every snapshot manifest decodes, its chunk lists decode, and every chunk they
    /// name is indexed; records which snapshots use which pack.
    fn check_snapshots(&self, c: &mut Checker<'_>, scan: &Scan) -> Result<()> {
        let storage: &dyn Storage = self.storage();
        let mut referenced = HashSet::new();
        let mut ids: Vec<Id> = storage
            .list(SNAPSHOT_PREFIX)?
            .into_iter()
            .filter_map(|(k, _)| snapshot_id_of_key(&k))
            .collect();
        ids.sort();
        let snapshot_total = ids.len().max(1) as f64;
        for sid in ids {
            c.report.stats.snapshots_checked += 1;
            c.progress(
                c.metadata_share * c.report.stats.snapshots_checked as f64 / snapshot_total,
            )?;
            let data = match storage.get(&crate::snapshot::snapshot_key(&sid)) {
                Ok(d) => d,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            c.report.stats.bytes_read += data.len() as u64;
            let snap = match decode_snapshot(self.keys(), sid, &data) {
                Ok(s) => s,
                Err(e) => {
                    c.find_error(FindingKind::Snapshot, None, Some(&sid), &e);
                    continue;
                }
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
                    decode_blob(self.keys(), loc, &b)
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
                c.used_by(sid, id, view.blobs.get(&id).map(|l| l.pack));
                if referenced.insert(id) && !view.blobs.contains_key(&id) {
                    c.find(
                        FindingKind::ChunkMissing,
                        None,
                        Some(&id),
                        Some(&sid),
                        format!("chunk {id} of item {:?} is not indexed", item.name),
                    );
                }
            }
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

    fn verify_packs(
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
                    Err(e) => return Err(e.into()),
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
            // A damaged member already explains a parity mismatch: only an intact group's
            // mismatch means the parity shard itself is damaged.
            let members_intact = complete && c.report.errors.len() == errors_before;
            if let (Some(p), Some(g), true) = (parity, group, members_intact) {
                let (computed, _) = p.finish();
                match storage.get(&g.parity_key()) {
                    Ok(stored) => {
                        c.report.stats.bytes_read += stored.len() as u64;
                        if stored != computed {
                            c.find(
                                FindingKind::ParityMismatch,
                                None,
                                None,
                                None,
                                format!(
                                    "parity shard {} of group {} does not match its members",
                                    g.desc.parity, g.key
                                ),
                            );
                        }
                    }
                    Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if level == VerifyLevel::Full {
            c.report.stats.chunks_checked = chunks.len() as u64;
        }
        Ok(())
    }

    fn check_pack(
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
        // Blobs decode independently: on all cores where the build allows.
        let failures = par_map(entries.to_vec(), |e| {
            let loc = Location { pack, entry: e };
            let start = e.offset as usize;
            data.get(start..start + e.stored_len as usize)
                .ok_or_else(|| {
                    Error::corruption(
                        format!("chunk {} in pack {pack}", e.id),
                        "lies past the end of the pack",
                    )
                })
                .and_then(|stored| decode_blob(keys, &loc, stored))
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
