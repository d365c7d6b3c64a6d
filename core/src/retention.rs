//! Which snapshots a retention policy keeps, exactly as restic's `forget --keep-*`.
//!
//! Snapshots are walked newest first. `keep_last` keeps the N newest. Each bucket rule
//! (hourly, daily, weekly, monthly, yearly) keeps the newest snapshot of each of the N most
//! recent buckets that have snapshots, a bucket being the hour / day / ISO week / month / year
//! of the snapshot time in its own UTC offset. As restic does since 0.16, a rule that still has
//! count left when the walk reaches the oldest snapshot keeps that one too. A snapshot kept by
//! any rule is kept.

use chrono::{Datelike, Timelike};

use crate::snapshot::Snapshot;

/// How many of each kind to keep; `None` means the rule is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// The N newest snapshots.
    pub keep_last: Option<u32>,
    /// The newest snapshot of each of the N most recent hours with snapshots.
    pub keep_hourly: Option<u32>,
    /// … days.
    pub keep_daily: Option<u32>,
    /// … ISO weeks.
    pub keep_weekly: Option<u32>,
    /// … months.
    pub keep_monthly: Option<u32>,
    /// … years.
    pub keep_yearly: Option<u32>,
}

impl Policy {
    /// Whether no rule is given (such a policy would remove everything: it is refused).
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(n, _)| n.is_none_or(|n| n == 0))
    }

    fn rules(&self) -> [(Option<u32>, Bucket); 6] {
        [
            (self.keep_last, Bucket::Last),
            (self.keep_hourly, Bucket::Hour),
            (self.keep_daily, Bucket::Day),
            (self.keep_weekly, Bucket::Week),
            (self.keep_monthly, Bucket::Month),
            (self.keep_yearly, Bucket::Year),
        ]
    }
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
}

/// Split `snapshots` into (kept, removed), both newest first.
pub fn apply(policy: &Policy, snapshots: &[Snapshot]) -> (Vec<Snapshot>, Vec<Snapshot>) {
    let mut list = snapshots.to_vec();
    list.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let mut state: Vec<(u32, Bucket, Option<i64>)> = policy
        .rules()
        .iter()
        .filter_map(|(n, b)| n.filter(|n| *n > 0).map(|n| (n, *b, None)))
        .collect();
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    let last = list.len().saturating_sub(1);
    for (position, snap) in list.into_iter().enumerate() {
        let mut keep = false;
        for (left, bucket, seen) in state.iter_mut() {
            if *left == 0 {
                continue;
            }
            let value = bucket.of(&snap, position);
            if *seen != Some(value) || position == last {
                keep = true;
                *seen = Some(value);
                *left -= 1;
            }
        }
        if keep {
            kept.push(snap);
        } else {
            removed.push(snap);
        }
    }
    (kept, removed)
}
