//! Which snapshots a retention policy keeps: restic's `forget` policy, grouping included.
//!
//! Snapshots are first split into groups ([`GroupBy`]: by host, by the set of item names, by
//! tags, or any mix; restic's default is host and paths, ours host and items) and the policy is
//! applied to each group on its own, so one series can never push another out.
//!
//! In a group, snapshots are walked newest first. `keep_last` keeps the N newest. Each bucket
//! rule (hourly, daily, weekly, monthly, yearly) keeps the newest snapshot of each of the N
//! most recent buckets that have snapshots, a bucket being the hour / day / ISO week / month /
//! year of the snapshot time in its own UTC offset; a count of -1 means every bucket. As
//! restic does, a bucket rule that still has count left when the walk reaches the oldest
//! snapshot keeps that one too (reason `oldest … snapshot`). `keep_within` keeps every
//! snapshot newer than the duration before the group's newest snapshot (the newest not in the
//! future); the `keep_within_*` rules keep the newest snapshot of each bucket within such a
//! duration, and the oldest snapshot when it is within.
//! `keep_tags` keeps every snapshot having all tags of one of its entries. A snapshot kept by
//! any rule is kept. Durations are restic's: `1y5m7d2h` (years, months, days, hours; `m` is
//! months), subtracted as calendar units in the newest snapshot's own offset, a day past the
//! end of a month rolling over as Go's `AddDate` does (source: restic
//! `internal/restic/snapshot_policy.go`, `duration.go`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::Snapshot;

/// A calendar duration as restic writes it: `1y5m7d2h`; zero means "rule off".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Years.
    pub years: u32,
    /// Months (`m`).
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl Span {
    /// Parse restic's duration syntax: numbers each followed by `y`, `m` (months), `d` or `h`,
    /// e.g. `30d`, `1y6m`, `2d12h`; surrounding blanks are ignored and an empty string is the
    /// zero span. Errors: [`Error::InvalidArgument`] naming what is wrong (no unit, unknown
    /// unit, negative or too large a number).
    pub fn parse(text: &str) -> Result<Span> {
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "duration {text:?}: {why} (write it as restic does, e.g. 30d, 1y6m, 2d12h: \
                 y years, m months, d days, h hours)"
            ))
        };
        let mut span = Span::default();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if rest.starts_with('-') {
                return Err(bad("negative durations are not allowed".into()));
            }
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(bad(format!("expected a number at {rest:?}")));
            }
            let number: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad(format!("{} is too large", &rest[..digits])))?;
            rest = &rest[digits..];
            let unit = rest
                .chars()
                .next()
                .ok_or_else(|| bad(format!("no unit after the number {number}")))?;
            match unit {
                'y' => span.years = number,
                'm' => span.months = number,
                'd' => span.days = number,
                'h' => span.hours = number,
                other => return Err(bad(format!("unknown unit {other:?} after {number}"))),
            }
            rest = &rest[unit.len_utf8()..];
        }
        Ok(span)
    }

    /// Whether every part is zero (the rule is off).
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The instant this span before `t`: years and months first, then days (a day past the
    /// end of a month rolls over into the next, as Go's `AddDate`), in `t`'s own offset, then
    /// hours. `None` when that lies before the calendar's range (everything is within).
    pub fn before(&self, t: &DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let local = t.naive_local();
        let months = local.year() as i64 * 12 + local.month0() as i64
            - self.years as i64 * 12
            - self.months as i64;
        let first = NaiveDate::from_ymd_opt(
            i32::try_from(months.div_euclid(12)).ok()?,
            months.rem_euclid(12) as u32 + 1,
            1,
        )?;
        let date = first
            .checked_add_signed(chrono::Duration::days(local.day() as i64 - 1))?
            .checked_sub_signed(chrono::Duration::days(self.days as i64))?;
        let naive = date
            .and_time(local.time())
            .checked_sub_signed(chrono::Duration::hours(self.hours as i64))?;
        t.offset().from_local_datetime(&naive).single()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Parse one `keep_tag` entry: `k=v`, or several joined by commas (`db=shop,tier=gold`), all
/// of which a snapshot must carry. Errors: [`Error::InvalidArgument`] for an empty entry or a
/// part without `=`.
pub fn parse_tag_set(entry: &str) -> Result<BTreeMap<String, String>> {
    let mut set = BTreeMap::new();
    for part in entry.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            Error::InvalidArgument(format!(
                "keep-tag {entry:?}: {part:?} is not KEY=VALUE (several are joined by commas)"
            ))
        })?;
        if k.trim().is_empty() {
            return Err(Error::InvalidArgument(format!(
                "keep-tag {entry:?}: a tag needs a key"
            )));
        }
        set.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(set)
}

/// What to keep. Counts: 0 means the rule is off, -1 keeps every bucket (restic's
/// "unlimited"); spans: zero means off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The N newest snapshots.
    pub keep_last: i64,
    /// The newest snapshot of each of the N most recent hours with snapshots.
    pub keep_hourly: i64,
    /// … days.
    pub keep_daily: i64,
    /// … ISO weeks.
    pub keep_weekly: i64,
    /// … months.
    pub keep_monthly: i64,
    /// … years.
    pub keep_yearly: i64,
    /// Every snapshot newer than this span before the group's newest.
    pub keep_within: Span,
    /// The newest snapshot of each hour within this span of the group's newest.
    pub keep_within_hourly: Span,
    /// … day.
    pub keep_within_daily: Span,
    /// … ISO week.
    pub keep_within_weekly: Span,
    /// … month.
    pub keep_within_monthly: Span,
    /// … year.
    pub keep_within_yearly: Span,
    /// Every snapshot carrying all tags of at least one entry.
    pub keep_tags: Vec<BTreeMap<String, String>>,
}

impl Policy {
    /// Whether no rule is given (such a policy would remove everything: prune refuses it).
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(n, _)| *n == 0)
            && self.spans().iter().all(|(s, _)| s.is_zero())
            && self.keep_within.is_zero()
            && self.keep_tags.is_empty()
    }

    /// Refuse counts below -1. Errors: [`Error::InvalidArgument`] naming the rule.
    pub fn validate(&self) -> Result<()> {
        for (n, bucket) in self.counts() {
            if n < -1 {
                return Err(Error::InvalidArgument(format!(
                    "keep-{} is {n}: give a count, or -1 for unlimited",
                    bucket.flag()
                )));
            }
        }
        Ok(())
    }

    fn counts(&self) -> [(i64, Bucket); 6] {
        [
            (self.keep_last, Bucket::Last),
            (self.keep_hourly, Bucket::Hour),
            (self.keep_daily, Bucket::Day),
            (self.keep_weekly, Bucket::Week),
            (self.keep_monthly, Bucket::Month),
            (self.keep_yearly, Bucket::Year),
        ]
    }

    fn spans(&self) -> [(Span, Bucket); 5] {
        [
            (self.keep_within_hourly, Bucket::Hour),
            (self.keep_within_daily, Bucket::Day),
            (self.keep_within_weekly, Bucket::Week),
            (self.keep_within_monthly, Bucket::Month),
            (self.keep_within_yearly, Bucket::Year),
        ]
    }
}

impl fmt::Display for Policy {
    /// A one-line description, e.g. `keep 7 daily, 4 weekly, all within 30d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (n, b) in self.counts() {
            match n {
                0 => {}
                -1 => parts.push(format!("all {}", b.display())),
                n => parts.push(format!("{n} {}", b.display())),
            }
        }
        for (s, b) in self.spans() {
            if !s.is_zero() {
                parts.push(format!("{} within {s}", b.noun()));
            }
        }
        if !self.keep_within.is_zero() {
            parts.push(format!("all within {}", self.keep_within));
        }
        for t in &self.keep_tags {
            parts.push(format!("all tagged {}", tag_text(t)));
        }
        write!(f, "keep {}", parts.join(", "))
    }
}

fn tag_text(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, Copy)]
enum Bucket {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    fn of(self, s: &Snapshot, position: usize) -> i64 {
        let t = &s.time;
        let (y, m, d, h) = (
            t.year() as i64,
            t.month() as i64,
            t.day() as i64,
            t.hour() as i64,
        );
        match self {
            Bucket::Last => position as i64,
            Bucket::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Bucket::Day => (y * 100 + m) * 100 + d,
            Bucket::Week => {
                let w = t.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            }
            Bucket::Month => y * 100 + m,
            Bucket::Year => y,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Bucket::Last => "last",
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
            Bucket::Week => "weekly",
            Bucket::Month => "monthly",
            Bucket::Year => "yearly",
        }
    }

    fn flag(self) -> &'static str {
        self.noun()
    }

    fn display(self) -> &'static str {
        match self {
            Bucket::Last => "latest",
            other => other.noun(),
        }
    }
}

/// A snapshot the policy keeps, and every rule that keeps it (e.g. `daily snapshot`,
/// `within 30d`, `has tags db=shop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The snapshot.
    pub id: Id,
    /// The rules that keep it, in the policy's order.
    pub reasons: Vec<String>,
}

/// Split `snapshots` (one group) into kept — each with its reasons — and removed, both newest
/// first. `now` (the caller's clock) keeps a snapshot dated in the future from being the
/// reference of the `within` rules; `None` takes every snapshot as past.
pub fn apply(
    policy: &Policy,
    snapshots: &[Snapshot],
    now: Option<&DateTime<FixedOffset>>,
) -> (Vec<(Snapshot, Vec<String>)>, Vec<Snapshot>) {
    let mut list = snapshots.to_vec();
    list.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let newest = list
        .iter()
        .map(|s| s.time)
        .filter(|t| now.is_none_or(|n| t < n))
        .max();
    // The instant a span before the newest; `None` = no limit (everything is within).
    let since = |span: &Span| newest.and_then(|t| span.before(&t));
    let within = |span: &Span, s: &Snapshot| since(span).is_none_or(|t| s.time > t);
    let mut counted: Vec<(i64, Bucket, Option<i64>)> = policy
        .counts()
        .into_iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, b)| (n, b, None))
        .collect();
    let mut spanned: Vec<(Span, Bucket, Option<i64>)> = policy
        .spans()
        .into_iter()
        .filter(|(s, _)| !s.is_zero())
        .map(|(s, b)| (s, b, None))
        .collect();
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    let last = list.len().saturating_sub(1);
    for (position, snap) in list.into_iter().enumerate() {
        let mut reasons = Vec::new();
        for t in &policy.keep_tags {
            if t.iter().all(|(k, v)| snap.manifest.tags.get(k) == Some(v)) {
                reasons.push(format!("has tags {}", tag_text(t)));
            }
        }
        if !policy.keep_within.is_zero() && within(&policy.keep_within, &snap) {
            reasons.push(format!("within {}", policy.keep_within));
        }
        for (left, bucket, seen) in counted.iter_mut() {
            if *left == 0 {
                continue;
            }
            let value = bucket.of(&snap, position);
            if *seen != Some(value) || position == last {
                let oldest = if *seen == Some(value) { "oldest " } else { "" };
                *seen = Some(value);
                if *left > 0 {
                    *left -= 1;
                }
                reasons.push(format!("{oldest}{} snapshot", bucket.noun()));
            }
        }
        for (span, bucket, seen) in spanned.iter_mut() {
            if within(span, &snap) {
                let value = bucket.of(&snap, position);
                if *seen != Some(value) || position == last {
                    let oldest = if *seen == Some(value) { "oldest " } else { "" };
                    *seen = Some(value);
                    reasons.push(format!("{oldest}{} within {span}", bucket.noun()));
                }
            }
        }
        if reasons.is_empty() {
            removed.push(snap);
        } else {
            kept.push((snap, reasons));
        }
    }
    (kept, removed)
}

/// What snapshots are grouped by before the policy is applied; all `false` = one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// The host that made the snapshot.
    pub host: bool,
    /// The set of item names (the analogue of restic's paths).
    pub items: bool,
    /// The whole set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// Host and items, as restic's default is host and paths.
    fn default() -> Self {
        GroupBy {
            host: true,
            items: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// No grouping: the policy sees every snapshot as one series.
    pub const NONE: GroupBy = GroupBy {
        host: false,
        items: false,
        tags: false,
    };

    /// From field names (`host`, `items` — or restic's `paths` —, `tags`); none = one pool.
    /// Errors: [`Error::InvalidArgument`] for another name.
    pub fn parse<S: AsRef<str>>(fields: &[S]) -> Result<GroupBy> {
        let mut g = GroupBy::NONE;
        for f in fields {
            match f.as_ref().trim() {
                "host" => g.host = true,
                "items" | "paths" => g.items = true,
                "tags" => g.tags = true,
                "" => {}
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "cannot group by {other:?}: give any of host, items, tags (or nothing)"
                    )))
                }
            }
        }
        Ok(g)
    }

    /// The group `s` belongs to.
    pub fn key(&self, s: &Snapshot) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.manifest.host.clone()),
            items: self.items.then(|| {
                let mut names: Vec<String> =
                    s.manifest.items.iter().map(|i| i.name.clone()).collect();
                names.sort();
                names
            }),
            tags: self.tags.then(|| s.manifest.tags.clone()),
        }
    }
}

/// The values a group shares; a field is absent when snapshots are not grouped by it (`host`
/// is `null` for snapshots from before hosts were recorded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    /// Host, when grouped by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Option<String>>,
    /// Sorted item names, when grouped by items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<String>>,
    /// Tags, when grouped by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

impl fmt::Display for GroupKey {
    /// E.g. `host node-a, items [db.sql]`; `all snapshots` when not grouped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {}", h.as_deref().unwrap_or("(unknown)")));
        }
        if let Some(items) = &self.items {
            parts.push(format!("items [{}]", items.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", tag_text(t)));
        }
        if parts.is_empty() {
            return f.write_str("all snapshots");
        }
        f.write_str(&parts.join(", "))
    }
}

/// The policy's decision for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDecision {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// Kept snapshots, newest first, with their reasons.
    pub kept: Vec<Kept>,
    /// Removed snapshots, newest first.
    pub removed: Vec<Id>,
}

/// Group `snapshots` by `group_by` and apply `policy` to each group (see [`apply`]); groups
/// in the order of their keys.
pub fn apply_grouped(
    policy: &Policy,
    group_by: GroupBy,
    snapshots: &[Snapshot],
    now: Option<&DateTime<FixedOffset>>,
) -> Vec<GroupDecision> {
    let mut groups: BTreeMap<GroupKey, Vec<Snapshot>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(group_by.key(s)).or_default().push(s.clone());
    }
    groups
        .into_iter()
        .map(|(key, members)| {
            let (kept, removed) = apply(policy, &members, now);
            GroupDecision {
                key,
                kept: kept
                    .into_iter()
                    .map(|(s, reasons)| Kept { id: s.id, reasons })
                    .collect(),
                removed: removed.into_iter().map(|s| s.id).collect(),
            }
        })
        .collect()
}
