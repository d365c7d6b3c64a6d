//! The checker verify carries through its phases: the report being built, who uses which pack
//! and chunk (so a finding names the snapshots that need the damaged object), and the findings
//! that wait for a second look.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::ops::verify::{Finding, FindingKind, VerifyReport};
use crate::parity::load_groups;
use crate::progress::{OnProgress, Progress};
use crate::scan::{list_packs, read_index_view};
use crate::storage::Storage;

pub(super) struct Checker<'a> {
    pub(super) report: VerifyReport,
    pub(super) on_error: Option<&'a mut dyn FnMut(&Finding)>,
    pub(super) on_progress: Option<OnProgress<'a>>,
    pub(super) metadata_share: f64,
    /// The first snapshot (by id) referencing each chunk or chunk list.
    pub(super) chunk_user: HashMap<Id, Id>,
    /// Per pack: the snapshots referencing a blob in it.
    pub(super) pack_users: HashMap<Id, PackUsers>,
    /// Snapshots with a chunk list that could not be read: which packs they need is unknown,
    /// so a finding about a pack says they may need it too.
    pub(super) untraced: Vec<Id>,
    /// Findings that another process's work in progress can explain (see
    /// [`FindingKind::is_transient`]):
    /// reported only if a second look at the end confirms them.
    pub(super) deferred: Vec<Finding>,
}

/// How many snapshots use a pack, and the first few.
#[derive(Default)]
pub(super) struct PackUsers {
    pub(super) count: usize,
    pub(super) last: Option<Id>,
    pub(super) first: Vec<Id>,
}

/// Snapshots named in a finding about a pack.
pub(super) const USERS_NAMED: usize = 5;

impl Checker<'_> {
    pub(super) fn progress(&mut self, fraction: f64) -> Result<()> {
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

    pub(super) fn tell(&mut self, f: &Finding) {
        if let Some(on_error) = self.on_error.as_mut() {
            on_error(f);
        }
    }

    /// Note that snapshot `sid` references blob `blob`, stored in `pack` (if indexed).
    /// Snapshots are checked one after another, so a pack counts each user once.
    pub(super) fn used_by(&mut self, sid: Id, blob: Id, pack: Option<Id>) {
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
    pub(super) fn find(
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
            if let Some(p) = pack {
                // A snapshot whose chunk list is unreadable (in another lost pack, say) may
                // need this pack too: say so rather than give a list that looks complete.
                let known = self.pack_users.get(p);
                let maybe: Vec<String> = self
                    .untraced
                    .iter()
                    .filter(|s| known.is_none_or(|u| !u.first.contains(s)))
                    .take(USERS_NAMED)
                    .map(Id::to_hex)
                    .collect();
                if !maybe.is_empty() {
                    message = format!(
                        "{message}; perhaps also by snapshot(s) {} (a chunk list of theirs \
                         cannot be read, so which packs they need is unknown)",
                        maybe.join(", ")
                    );
                }
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
    pub(super) fn second_look(
        &mut self,
        storage: &dyn Storage,
        keys: &crate::crypto::Keys,
    ) -> Result<()> {
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
        let shards: HashSet<Id> = crate::parity::list_parity(storage)?
            .into_iter()
            .filter_map(|(k, _)| match crate::layout::classify(&k)? {
                (crate::layout::Kind::Parity, Some(id)) => Some(id),
                _ => None,
            })
            .collect();
        // Groups whose shard is missing now, by key (a finding's message names its group).
        let shard_missing: Vec<&str> = groups
            .iter()
            .filter(|g| !shards.contains(&g.desc.parity))
            .map(|g| g.key.as_str())
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
                (FindingKind::ParityMissing, _, _) => shard_missing
                    .iter()
                    .any(|key| f.message.ends_with(&format!("of group {key} is missing"))),
                _ => true,
            };
            if holds {
                self.tell(&f);
                self.report.errors.push(f);
            }
        }
        Ok(())
    }

    pub(super) fn find_error(
        &mut self,
        kind: FindingKind,
        pack: Option<&Id>,
        snapshot: Option<&Id>,
        e: &Error,
    ) {
        self.find(kind, pack, None, snapshot, e.to_string());
    }
}
