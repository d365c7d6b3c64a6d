//! `prune` and `forget`: remove snapshots (by retention policy, or by id) and collect the
//! garbage they leave, under the exclusive lock. A run is a plan (`plan.rs`: read everything,
//! decide every pack's fate, predict the bytes freed) and, unless it is a dry run, its
//! execution (`execute.rs`: write new packs, parity and index, announce deletions, re-check for
//! snapshots written meanwhile, then delete in crash-safe order).

mod execute;
mod plan;

use std::collections::HashSet;

use crate::progress::{OnProgress, Progress};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::crypto::RandomSource;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock::{LockInfo, StaleCheck};
use crate::repo::{resolve_snapshot_prefix, Repository, SnapshotFilter};
use crate::retention::{apply_grouped, GroupBy, GroupDecision, Policy};
use crate::snapshot::Snapshot;
use crate::storage::Storage;

/// Prune rewrites a pack when at least this percentage of its blob bytes is garbage (and
/// deletes it when all of it is).
pub const REWRITE_THRESHOLD_PERCENT: u64 = 20;

/// A pack is small when its file is under `pack_size / SMALL_PACK_DIVISOR`.
pub const SMALL_PACK_DIVISOR: u64 = 4;

/// Prune merges small packs into full-size ones once there are at least this many.
pub const MERGE_MIN_SMALL_PACKS: usize = 10;

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

/// How to run a prune or forget: [`PruneOptions::new`], then the setters.
#[derive(Default)]
pub struct PruneOptions<'a> {
    /// Change nothing; report what a real run would do.
    pub dry_run: bool,
    /// Sees progress (see [`Repository::prune`]).
    pub on_progress: Option<OnProgress<'a>>,
}

impl<'a> PruneOptions<'a> {
    /// A real run, telling no one along the way.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to only plan and report (`true`) or also carry out.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Tell `f` the progress.
    pub fn on_progress(mut self, f: OnProgress<'a>) -> Self {
        self.on_progress = Some(f);
        self
    }
}

impl<S: Storage> Repository<S> {
    /// Apply a retention policy and collect garbage: the snapshots `retention.filter` selects
    /// are grouped and the policy applied to each group. With `options.dry_run` nothing
    /// changes and the report is what a real run would do. Progress (see
    /// [`crate::progress`]) counts the bytes of the packs read for rewriting and of the packs
    /// deleted; an error the callback returns (`Cancelled`: a signal arrived) stops prune
    /// there, as a crash would (every step is safe to interrupt), and is returned.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or invalid policy; [`Error::Locked`];
    /// [`Error::Corruption`] (run repair first) for a snapshot, index
    /// file or notice that does not decode, or data a remaining snapshot needs that is missing;
    /// [`Error::ConcurrentModification`] when a snapshot
    /// written meanwhile needs a pack it was deleting or its lock was removed (nothing
    /// deleted); the error `on_progress` returns; [`Error::Storage`].
    pub fn prune(
        &self,
        retention: &Retention,
        options: PruneOptions<'_>,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<PruneReport> {
        retention.policy.validate()?;
        if retention.policy.is_empty() {
            return Err(Error::InvalidArgument(
                "no retention rule given (keep-last, keep-hourly/daily/weekly/monthly/yearly, keep-within*, keep-tag): prune would remove every snapshot".into(),
            ));
        }
        self.collect(Selection::Policy(retention), options, info, rng, is_stale)
    }

    /// Remove exactly the snapshots `refs` names (full ids or unique prefixes; `latest` is
    /// refused: name the snapshot) and collect the garbage only they made, in prune's
    /// crash-safe order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `latest` or no snapshot; [`Error::SnapshotNotFound`] /
    /// [`Error::AmbiguousSnapshotId`] for a bad reference; otherwise as
    /// [`Repository::prune`].
    pub fn forget(
        &self,
        refs: &[String],
        options: PruneOptions<'_>,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
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
        self.collect(Selection::Snapshots(refs), options, info, rng, is_stale)
    }

    fn collect(
        &self,
        selection: Selection<'_>,
        options: PruneOptions<'_>,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<PruneReport> {
        let PruneOptions {
            dry_run,
            mut on_progress,
        } = options;
        let on_progress = &mut |done: u64, total: u64, what: &str| match on_progress.as_mut() {
            Some(report) => report(&Progress::of_bytes(done, total, what)),
            None => Ok(()),
        };
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
        unreadable: &[Id],
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
                    let ids = all.iter().map(|s| s.id).chain(unreadable.iter().copied());
                    removed.insert(resolve_snapshot_prefix(ids, r)?);
                }
                Ok((removed, Vec::new()))
            }
        }
    }
}
