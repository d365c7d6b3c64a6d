//! Retention policies, one behaviour per test, checked against restic's `forget` semantics.

use std::collections::BTreeMap;

use containerarchive_core::retention::{apply, Policy};
use containerarchive_core::snapshot::{parse_time, Manifest};
use containerarchive_core::{Id, Snapshot};

fn snap(t: &str) -> Snapshot {
    Snapshot {
        id: Id::sha256(t.as_bytes()),
        time: parse_time(t).unwrap(),
        manifest: Manifest {
            version: 1,
            created_at: t.into(),
            tags: BTreeMap::new(),
            original_size: 0,
            stored_size: 0,
            chunk_count: 0,
            new_chunks: 0,
            reused_chunks: 0,
            items: vec![],
        },
    }
}

/// Kept times, newest first.
fn kept(policy: Policy, times: &[&str]) -> Vec<String> {
    let snaps: Vec<Snapshot> = times.iter().map(|t| snap(t)).collect();
    let (kept, removed) = apply(&policy, &snaps);
    assert_eq!(kept.len() + removed.len(), times.len());
    kept.into_iter().map(|s| s.manifest.created_at).collect()
}

#[test]
fn keep_last_keeps_the_newest_n() {
    let times = [
        "2026-01-01T00:00:00Z",
        "2026-01-03T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-05T00:00:00Z",
        "2026-01-04T00:00:00Z",
    ];
    let p = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-05T00:00:00Z", "2026-01-04T00:00:00Z"]
    );
}

#[test]
fn keep_last_larger_than_the_list_keeps_all() {
    let times = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"];
    let p = Policy {
        keep_last: Some(10),
        ..Policy::default()
    };
    assert_eq!(kept(p, &times).len(), 2);
}

#[test]
fn keep_daily_keeps_the_newest_snapshot_of_each_recent_day() {
    let times = [
        "2026-01-01T10:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-02T09:00:00Z",
        "2026-01-03T08:00:00Z",
        "2026-01-03T07:00:00Z",
    ];
    let p = Policy {
        keep_daily: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-03T08:00:00Z", "2026-01-02T09:00:00Z"]
    );
}

#[test]
fn a_bucket_rule_with_count_left_also_keeps_the_oldest_snapshot() {
    let times = [
        "2026-01-01T10:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-02T09:00:00Z",
        "2026-01-03T08:00:00Z",
    ];
    let p = Policy {
        keep_daily: Some(5),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        [
            "2026-01-03T08:00:00Z",
            "2026-01-02T09:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-01T10:00:00Z"
        ]
    );
}

#[test]
fn an_exhausted_rule_does_not_keep_the_oldest() {
    let times = [
        "2026-01-01T10:05:00Z",
        "2026-01-01T10:55:00Z",
        "2026-01-01T11:30:00Z",
    ];
    let p = Policy {
        keep_hourly: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-01T11:30:00Z", "2026-01-01T10:55:00Z"]
    );
}

#[test]
fn keep_weekly_uses_iso_weeks_across_the_year_boundary() {
    // 2025-12-29 (Mon) and 2026-01-04 (Sun) are both in ISO week 2026-W01.
    let times = [
        "2025-12-22T12:00:00Z",
        "2025-12-29T12:00:00Z",
        "2026-01-04T12:00:00Z",
        "2026-01-05T12:00:00Z",
    ];
    let p = Policy {
        keep_weekly: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-05T12:00:00Z", "2026-01-04T12:00:00Z"]
    );
    let p = Policy {
        keep_weekly: Some(3),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        [
            "2026-01-05T12:00:00Z",
            "2026-01-04T12:00:00Z",
            "2025-12-22T12:00:00Z"
        ]
    );
}

#[test]
fn a_week_starts_on_monday() {
    // Sunday 2026-03-08 and Monday 2026-03-09 are in different ISO weeks.
    let times = ["2026-03-08T23:00:00Z", "2026-03-09T01:00:00Z"];
    let p = Policy {
        keep_weekly: Some(1),
        ..Policy::default()
    };
    assert_eq!(kept(p, &times), ["2026-03-09T01:00:00Z"]);
    let p = Policy {
        keep_daily: Some(1),
        ..Policy::default()
    };
    assert_eq!(kept(p, &times), ["2026-03-09T01:00:00Z"]);
}

#[test]
fn buckets_use_the_snapshot_times_own_utc_offset() {
    // 00:30 on New Year's Day in UTC+1 is still 2025-12-31 in UTC: it counts as January 2026.
    let times = [
        "2025-11-20T12:00:00Z",
        "2025-12-15T12:00:00Z",
        "2025-12-31T22:00:00+00:00",
        "2026-01-01T00:30:00+01:00",
    ];
    let p = Policy {
        keep_monthly: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-01T00:30:00+01:00", "2025-12-31T22:00:00+00:00"]
    );
    let p = Policy {
        keep_yearly: Some(1),
        ..Policy::default()
    };
    assert_eq!(kept(p, &times), ["2026-01-01T00:30:00+01:00"]);
}

#[test]
fn keep_monthly_across_months_of_different_lengths() {
    let times = [
        "2026-01-31T12:00:00Z",
        "2026-02-01T12:00:00Z",
        "2026-02-28T12:00:00Z",
        "2026-03-01T00:00:00Z",
    ];
    let p = Policy {
        keep_monthly: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-03-01T00:00:00Z", "2026-02-28T12:00:00Z"]
    );
}

#[test]
fn keep_yearly_with_count_left_keeps_the_first_snapshot_ever() {
    let times = [
        "2024-06-01T00:00:00Z",
        "2024-12-31T23:59:59Z",
        "2025-01-01T00:00:00Z",
        "2025-07-01T00:00:00Z",
    ];
    let p = Policy {
        keep_yearly: Some(5),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        [
            "2025-07-01T00:00:00Z",
            "2024-12-31T23:59:59Z",
            "2024-06-01T00:00:00Z"
        ]
    );
}

#[test]
fn a_snapshot_kept_by_any_rule_is_kept() {
    let times = [
        "2026-01-01T10:00:00Z",
        "2026-01-02T10:00:00Z",
        "2026-01-02T11:00:00Z",
        "2026-01-02T12:00:00Z",
    ];
    let p = Policy {
        keep_last: Some(2),
        keep_daily: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        [
            "2026-01-02T12:00:00Z",
            "2026-01-02T11:00:00Z",
            "2026-01-01T10:00:00Z"
        ]
    );
}

#[test]
fn hourly_and_daily_together_over_a_day_boundary_in_a_negative_offset() {
    // 23:30 at UTC-5 is the next day in UTC, but buckets follow the local day.
    let times = [
        "2026-05-01T22:10:00-05:00",
        "2026-05-01T23:30:00-05:00",
        "2026-05-02T00:15:00-05:00",
    ];
    let p = Policy {
        keep_daily: Some(1),
        ..Policy::default()
    };
    assert_eq!(kept(p, &times), ["2026-05-02T00:15:00-05:00"]);
    let p = Policy {
        keep_daily: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-05-02T00:15:00-05:00", "2026-05-01T23:30:00-05:00"]
    );
    let p = Policy {
        keep_hourly: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-05-02T00:15:00-05:00", "2026-05-01T23:30:00-05:00"]
    );
}

#[test]
fn no_rule_is_an_empty_policy_and_zero_counts_are_off() {
    assert!(Policy::default().is_empty());
    assert!(Policy {
        keep_daily: Some(0),
        ..Policy::default()
    }
    .is_empty());
    assert!(!Policy {
        keep_yearly: Some(1),
        ..Policy::default()
    }
    .is_empty());
}

#[test]
fn an_empty_repository_keeps_nothing_and_removes_nothing() {
    let p = Policy {
        keep_last: Some(3),
        ..Policy::default()
    };
    assert!(kept(p, &[]).is_empty());
}
