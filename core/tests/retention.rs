//! Retention policies, one behaviour per test, checked against restic's `forget` semantics.

use std::collections::BTreeMap;

use containerarchive_core::retention::{
    apply, apply_grouped, parse_tag_set, GroupBy, Policy, Span,
};
use containerarchive_core::snapshot::{parse_time, Item, Manifest};
use containerarchive_core::{Id, Snapshot};

fn snap(t: &str) -> Snapshot {
    Snapshot {
        id: Id::sha256(t.as_bytes()),
        time: parse_time(t).unwrap(),
        manifest: Manifest {
            version: 1,
            created_at: t.into(),
            tags: BTreeMap::new(),
            host: None,
            original_size: 0,
            stored_size: 0,
            chunk_count: 0,
            new_chunks: 0,
            reused_chunks: 0,
            delta_chunks: 0,
            delta_original_size: 0,
            delta_stored_size: 0,
            items: vec![],
        },
    }
}

/// Kept times, newest first.
fn kept(policy: Policy, times: &[&str]) -> Vec<String> {
    let snaps: Vec<Snapshot> = times.iter().map(|t| snap(t)).collect();
    let (kept, removed) = apply(&policy, &snaps, None);
    assert_eq!(kept.len() + removed.len(), times.len());
    kept.into_iter()
        .map(|(s, _)| s.manifest.created_at)
        .collect()
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
        keep_last: 2,
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
        keep_last: 10,
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
        keep_daily: 2,
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
        keep_daily: 5,
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
        keep_hourly: 2,
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
        keep_weekly: 2,
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-05T12:00:00Z", "2026-01-04T12:00:00Z"]
    );
    let p = Policy {
        keep_weekly: 3,
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
        keep_weekly: 1,
        ..Policy::default()
    };
    assert_eq!(kept(p, &times), ["2026-03-09T01:00:00Z"]);
    let p = Policy {
        keep_daily: 1,
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
        keep_monthly: 2,
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-01-01T00:30:00+01:00", "2025-12-31T22:00:00+00:00"]
    );
    let p = Policy {
        keep_yearly: 1,
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
        keep_monthly: 2,
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
        keep_yearly: 5,
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
        keep_last: 2,
        keep_daily: 2,
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
        keep_daily: 1,
        ..Policy::default()
    };
    assert_eq!(kept(p, &times), ["2026-05-02T00:15:00-05:00"]);
    let p = Policy {
        keep_daily: 2,
        ..Policy::default()
    };
    assert_eq!(
        kept(p, &times),
        ["2026-05-02T00:15:00-05:00", "2026-05-01T23:30:00-05:00"]
    );
    let p = Policy {
        keep_hourly: 2,
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
        keep_daily: 0,
        ..Policy::default()
    }
    .is_empty());
    assert!(!Policy {
        keep_yearly: 1,
        ..Policy::default()
    }
    .is_empty());
}

#[test]
fn an_empty_repository_keeps_nothing_and_removes_nothing() {
    let p = Policy {
        keep_last: 3,
        ..Policy::default()
    };
    assert!(kept(p, &[]).is_empty());
}

fn with(t: &str, host: Option<&str>, items: &[&str], tags: &[(&str, &str)]) -> Snapshot {
    let mut s = snap(t);
    s.id = Id::sha256(format!("{t}{host:?}{items:?}{tags:?}").as_bytes());
    s.manifest.host = host.map(str::to_string);
    s.manifest.items = items
        .iter()
        .map(|n| Item {
            name: n.to_string(),
            kind: "raw".into(),
            size: 0,
            chunk_count: 0,
            chunk_lists: vec![],
            command: None,
        })
        .collect();
    s.manifest.tags = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

/// Kept times with their reasons, newest first.
fn kept_why(policy: &Policy, snaps: &[Snapshot], now: Option<&str>) -> Vec<(String, Vec<String>)> {
    let now = now.map(|n| parse_time(n).unwrap());
    apply(policy, snaps, now.as_ref())
        .0
        .into_iter()
        .map(|(s, r)| (s.manifest.created_at, r))
        .collect()
}

fn nightly(days: u32) -> Vec<Snapshot> {
    (1..=days)
        .map(|d| snap(&format!("2026-03-{d:02}T02:00:00Z")))
        .collect()
}

#[test]
fn spans_parse_as_restic_writes_them() {
    type Parts = (u32, u32, u32, u32);
    let cases: &[(&str, Parts)] = &[
        ("30d", (0, 0, 30, 0)),
        ("1y5m7d2h", (1, 5, 7, 2)),
        ("2h", (0, 0, 0, 2)),
        (" 1m ", (0, 1, 0, 0)),
        ("", (0, 0, 0, 0)),
        ("1d1d", (0, 0, 1, 0)),
        ("3d12h", (0, 0, 3, 12)),
    ];
    for (text, (y, m, d, h)) in cases {
        let s = Span::parse(text).unwrap();
        assert_eq!(
            (s.years, s.months, s.days, s.hours),
            (*y, *m, *d, *h),
            "{text:?}"
        );
    }
    assert_eq!(Span::parse("1y5m7d2h").unwrap().to_string(), "1y5m7d2h");
    for bad in [
        "30",
        "5w",
        "d",
        "-1d",
        "1d-2h",
        "99999999999d",
        "1.5d",
        "1 d",
    ] {
        let e = Span::parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad.trim()), "{bad:?}: {e}");
    }
}

#[test]
fn a_span_subtracts_calendar_units_rolling_over_like_go() {
    let before = |t: &str, span: &str| {
        Span::parse(span)
            .unwrap()
            .before(&parse_time(t).unwrap())
            .unwrap()
            .to_rfc3339()
    };
    // March 31 less a month is "February 31", which rolls over to March 3 (2026) / 2 (2024).
    assert_eq!(
        before("2026-03-31T10:00:00+00:00", "1m"),
        "2026-03-03T10:00:00+00:00"
    );
    assert_eq!(
        before("2024-03-31T10:00:00+00:00", "1m"),
        "2024-03-02T10:00:00+00:00"
    );
    // February 29 less a year is March 1.
    assert_eq!(
        before("2024-02-29T00:00:00+00:00", "1y"),
        "2023-03-01T00:00:00+00:00"
    );
    // Years and months first, then days, then hours, in the time's own offset.
    assert_eq!(
        before("2026-01-10T01:00:00+02:00", "1y2m3d3h"),
        "2024-11-06T22:00:00+02:00"
    );
    assert_eq!(
        before("2026-01-01T00:30:00+00:00", "1h"),
        "2025-12-31T23:30:00+00:00"
    );
}

#[test]
fn keep_within_keeps_what_is_newer_than_the_span_before_the_newest() {
    let snaps = nightly(10);
    let p = Policy {
        keep_within: Span::parse("3d").unwrap(),
        ..Policy::default()
    };
    // Newest 03-10 02:00; 3 days before is 03-07 02:00, which is not *after* it: out.
    let got = kept_why(&p, &snaps, None);
    assert_eq!(
        got.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        [
            "2026-03-10T02:00:00Z",
            "2026-03-09T02:00:00Z",
            "2026-03-08T02:00:00Z"
        ]
    );
    assert!(got.iter().all(|(_, r)| r == &["within 3d"]));
    // A snapshot dated in the future is not the reference: the newest past one is.
    let mut with_future = snaps.clone();
    with_future.push(snap("2027-01-01T00:00:00Z"));
    let got = kept_why(&p, &with_future, Some("2026-03-15T00:00:00Z"));
    assert_eq!(got.len(), 4, "{got:?}");
    // Without the clock, the future snapshot is the reference and only it is within.
    assert_eq!(kept_why(&p, &with_future, None).len(), 1);
}

#[test]
fn keep_within_buckets_keep_one_per_bucket_and_the_oldest_within() {
    let times = [
        "2026-03-01T01:00:00Z",
        "2026-03-01T05:00:00Z",
        "2026-03-02T01:00:00Z",
        "2026-03-02T07:00:00Z",
        "2026-03-03T09:00:00Z",
    ];
    let snaps: Vec<Snapshot> = times.iter().map(|t| snap(t)).collect();
    let p = Policy {
        keep_within_daily: Span::parse("2d").unwrap(),
        ..Policy::default()
    };
    // Within 2 days of 03-03 09:00 (after 03-01 09:00): the newest of 03-03 and of 03-02.
    assert_eq!(
        kept_why(&p, &snaps, None),
        [
            (
                "2026-03-03T09:00:00Z".to_string(),
                vec!["daily within 2d".to_string()]
            ),
            (
                "2026-03-02T07:00:00Z".to_string(),
                vec!["daily within 2d".to_string()]
            ),
        ]
    );
    // Long enough to reach the oldest snapshot: it is kept too, as "oldest".
    let p = Policy {
        keep_within_daily: Span::parse("1m").unwrap(),
        ..Policy::default()
    };
    let got = kept_why(&p, &snaps, None);
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].0, "2026-03-01T01:00:00Z");
    assert_eq!(got[3].1, ["oldest daily within 1m"]);
}

#[test]
fn minus_one_keeps_every_bucket() {
    let snaps = nightly(10);
    let all = |p: Policy| kept_why(&p, &snaps, None).len();
    assert_eq!(
        all(Policy {
            keep_last: -1,
            ..Policy::default()
        }),
        10
    );
    assert_eq!(
        all(Policy {
            keep_daily: -1,
            ..Policy::default()
        }),
        10
    );
    assert_eq!(
        all(Policy {
            keep_weekly: -1,
            ..Policy::default()
        }),
        3
    );
    assert_eq!(
        all(Policy {
            keep_monthly: -1,
            ..Policy::default()
        }),
        2,
        "March, and the oldest"
    );
    assert!(Policy {
        keep_yearly: -2,
        ..Policy::default()
    }
    .validate()
    .is_err());
    assert!(Policy {
        keep_yearly: -1,
        ..Policy::default()
    }
    .validate()
    .is_ok());
    assert!(!Policy {
        keep_hourly: -1,
        ..Policy::default()
    }
    .is_empty());
}

#[test]
fn keep_tag_entries_need_all_their_tags_and_any_entry_keeps() {
    let snaps = vec![
        with(
            "2026-03-01T00:00:00Z",
            None,
            &["a"],
            &[("db", "shop"), ("tier", "gold")],
        ),
        with("2026-03-02T00:00:00Z", None, &["a"], &[("db", "shop")]),
        with(
            "2026-03-03T00:00:00Z",
            None,
            &["a"],
            &[("db", "crm"), ("tier", "gold")],
        ),
        with("2026-03-04T00:00:00Z", None, &["a"], &[]),
    ];
    let p = Policy {
        keep_tags: vec![parse_tag_set("db=shop,tier=gold").unwrap()],
        ..Policy::default()
    };
    assert_eq!(
        kept_why(&p, &snaps, None),
        [(
            "2026-03-01T00:00:00Z".to_string(),
            vec!["has tags db=shop,tier=gold".to_string()]
        )]
    );
    let p = Policy {
        keep_tags: vec![
            parse_tag_set("db=shop").unwrap(),
            parse_tag_set("tier=gold").unwrap(),
        ],
        ..Policy::default()
    };
    let got = kept_why(&p, &snaps, None);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].1, ["has tags db=shop", "has tags tier=gold"]);
    assert!(parse_tag_set("db").is_err());
    assert!(parse_tag_set("=x").is_err());
    assert!(!Policy {
        keep_tags: vec![parse_tag_set("a=b").unwrap()],
        ..Policy::default()
    }
    .is_empty());
}

#[test]
fn reasons_name_every_rule_that_keeps_a_snapshot() {
    let snaps = nightly(3);
    let p = Policy {
        keep_last: 1,
        keep_daily: 2,
        keep_within: Span::parse("1d").unwrap(),
        ..Policy::default()
    };
    assert_eq!(
        kept_why(&p, &snaps, None),
        [
            (
                "2026-03-03T02:00:00Z".to_string(),
                vec![
                    "within 1d".to_string(),
                    "last snapshot".into(),
                    "daily snapshot".into()
                ]
            ),
            (
                "2026-03-02T02:00:00Z".to_string(),
                vec!["daily snapshot".to_string()]
            ),
        ]
    );
}

#[test]
fn each_series_is_retained_on_its_own() {
    // Two nightly series, 02:00 and 02:05, ten nights each: daily 7 + weekly 4 per series.
    let mut snaps = Vec::new();
    for d in 1..=10 {
        snaps.push(with(
            &format!("2026-03-{d:02}T02:00:00Z"),
            Some("db1"),
            &["shop.sql"],
            &[("db", "shop")],
        ));
        snaps.push(with(
            &format!("2026-03-{d:02}T02:05:00Z"),
            Some("db1"),
            &["crm.sql"],
            &[("db", "crm")],
        ));
    }
    let p = Policy {
        keep_daily: 7,
        keep_weekly: 4,
        ..Policy::default()
    };
    let groups = apply_grouped(&p, GroupBy::default(), &snaps, None);
    assert_eq!(groups.len(), 2);
    for g in &groups {
        assert_eq!(g.kept.len(), 8, "{}", g.key);
        assert_eq!(g.removed.len(), 2);
    }
    assert_eq!(groups[0].key.to_string(), "host db1, items [crm.sql]");
    // One pool: the later series pushes the earlier one out of the daily buckets.
    let pooled = apply_grouped(&p, GroupBy::NONE, &snaps, None);
    assert_eq!(pooled.len(), 1);
    assert_eq!(pooled[0].key.to_string(), "all snapshots");
    let shop_kept = pooled[0]
        .kept
        .iter()
        .filter(|k| {
            snaps
                .iter()
                .any(|s| s.id == k.id && s.manifest.tags["db"] == "shop")
        })
        .count();
    assert!(shop_kept < 3, "pooled, shop keeps {shop_kept}");
}

#[test]
fn groups_by_host_items_tags_or_any_mix() {
    let snaps = vec![
        with(
            "2026-03-01T00:00:00Z",
            Some("a"),
            &["x", "y"],
            &[("k", "1")],
        ),
        with(
            "2026-03-02T00:00:00Z",
            Some("a"),
            &["y", "x"],
            &[("k", "2")],
        ),
        with(
            "2026-03-03T00:00:00Z",
            Some("b"),
            &["x", "y"],
            &[("k", "1")],
        ),
        with("2026-03-04T00:00:00Z", None, &["x"], &[("k", "1")]),
    ];
    let p = Policy {
        keep_last: 1,
        ..Policy::default()
    };
    let count =
        |fields: &[&str]| apply_grouped(&p, GroupBy::parse(fields).unwrap(), &snaps, None).len();
    assert_eq!(count(&[]), 1);
    assert_eq!(count(&["host"]), 3, "a, b and unknown");
    assert_eq!(count(&["items"]), 2, "item order does not matter");
    assert_eq!(count(&["tags"]), 2);
    assert_eq!(count(&["host", "items"]), 3);
    assert_eq!(count(&["host", "tags"]), 4);
    assert_eq!(count(&["paths"]), 2, "restic's name for items");
    assert!(GroupBy::parse(&["hostname"]).is_err());
    let json = serde_json::to_value(apply_grouped(
        &p,
        GroupBy::parse(&["host"]).unwrap(),
        &snaps,
        None,
    ))
    .unwrap();
    assert_eq!(json[0]["key"], serde_json::json!({"host": null}));
    assert_eq!(json[1]["key"], serde_json::json!({"host": "a"}));
    assert_eq!(
        json[1]["kept"][0]["reasons"],
        serde_json::json!(["last snapshot"])
    );
}

#[test]
fn a_manifest_without_a_host_reads_as_host_unknown_and_one_with_a_host_round_trips() {
    use containerarchive_core::crypto::Keys;
    use containerarchive_core::snapshot::{decode_snapshot, encode_snapshot};
    let keys = Keys::plain();
    let old = snap("2026-03-01T00:00:00Z").manifest;
    let (id, bytes) = encode_snapshot(&keys, &old, [0; 12]);
    let json = String::from_utf8_lossy(&bytes[8..]).to_string();
    assert!(
        json.contains("created_at") && !json.contains("host"),
        "{json}"
    );
    assert_eq!(
        decode_snapshot(&keys, id, &bytes).unwrap().manifest.host,
        None
    );
    let mut new = old.clone();
    new.host = Some("db1".into());
    let (id, bytes) = encode_snapshot(&keys, &new, [0; 12]);
    assert_eq!(
        decode_snapshot(&keys, id, &bytes)
            .unwrap()
            .manifest
            .host
            .as_deref(),
        Some("db1")
    );
    // A manifest naming an unprintable host is reported as damaged, not used.
    new.host = Some("bad\nhost".into());
    let (id, bytes) = encode_snapshot(&keys, &new, [0; 12]);
    assert!(decode_snapshot(&keys, id, &bytes)
        .unwrap_err()
        .to_string()
        .contains("host"));
}
