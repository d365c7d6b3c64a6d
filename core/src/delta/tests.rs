use super::*;
use crate::id::Id;

/// Rows of a table dump, seeded.
fn rows(n: usize, seed: u64) -> Vec<String> {
    let mut x = seed * 2 + 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!(
                "{i}\tuser{}@example.org\t{:016x}\t2026-11-{:02}\n",
                x % 100_000,
                x,
                x % 28 + 1
            )
        })
        .collect()
}

/// `base` with every `every`-th row changed and the changed rows moved to the end.
fn changed(base: &[String], every: usize) -> Vec<String> {
    let mut kept = Vec::new();
    let mut moved = Vec::new();
    for (i, r) in base.iter().enumerate() {
        if i % every == 0 {
            moved.push(r.replace("@example.org", "@example.net"));
        } else {
            kept.push(r.clone());
        }
    }
    kept.extend(moved);
    kept
}

fn bytes(rows: &[String]) -> Vec<u8> {
    rows.concat().into_bytes()
}

#[test]
fn similar_chunks_share_a_super_feature_and_unrelated_ones_do_not() {
    let keys = Keys::from_master(&[7; 32], &Id([1; 32]));
    let night1 = rows(5000, 1);
    let a = features(&keys, &bytes(&night1));
    let b = features(&keys, &bytes(&changed(&night1, 33)));
    let other = features(&keys, &bytes(&rows(5000, 2)));
    assert!(
        a.iter().filter(|f| b.contains(f)).count() >= 1,
        "{a:?} {b:?}"
    );
    assert_eq!(a.iter().filter(|f| other.contains(f)).count(), 0);
    // Keyed: another repository's key gives other values for the same content.
    let foreign = features(&Keys::from_master(&[8; 32], &Id([1; 32])), &bytes(&night1));
    assert_eq!(a.iter().filter(|f| foreign.contains(f)).count(), 0);
    assert_eq!(a, features(&keys, &bytes(&night1)), "deterministic");
}

#[test]
fn a_delta_is_small_and_both_decoders_restore_it() {
    if !can_encode() {
        return;
    }
    let night1 = rows(5000, 3);
    let base = bytes(&night1);
    let data = bytes(&changed(&night1, 33));
    let delta = encode_delta(&base, &data, 3).unwrap();
    let full = crate::compress::compress(crate::compress::Compression::Zstd, 3, &data).unwrap();
    assert!(
        delta.len() * 5 < full.len(),
        "delta {} full {}",
        delta.len(),
        full.len()
    );
    assert_eq!(decode_delta(&base, &delta, data.len()).unwrap(), data);
    assert_eq!(
        ruzstd_decode_delta(&base, &delta, data.len()).unwrap(),
        data
    );
}

#[test]
fn a_delta_against_the_wrong_base_or_length_is_an_error_never_wrong_bytes() {
    if !can_encode() {
        return;
    }
    let base = bytes(&rows(3000, 4));
    let data = bytes(&changed(&rows(3000, 4), 10));
    let delta = encode_delta(&base, &data, 3).unwrap();
    let wrong = bytes(&rows(3000, 5));
    for decode in [decode_delta, ruzstd_decode_delta] {
        assert!(decode(&base, &delta, data.len() - 1).is_err());
        assert!(decode(&base, &delta, data.len() + 1).is_err());
        // Another base of the same length decodes to other bytes (the chunk id catches that)
        // or fails; a shorter base cannot serve the offsets reaching into it.
        if let Ok(out) = decode(&wrong, &delta, data.len()) {
            assert_ne!(out, data);
        }
        assert!(decode(&base[..base.len() / 2], &delta, data.len()).map_or(true, |o| o != data));
        let mut cut = delta.clone();
        cut.truncate(delta.len() - 3);
        assert!(decode(&base, &cut, data.len()).is_err());
    }
}

#[test]
fn decoders_agree_on_deltas_of_every_shape() {
    if !can_encode() {
        return;
    }
    let base = bytes(&rows(20_000, 6));
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"x".to_vec(),
        base.clone(),
        base[base.len() / 3..].to_vec(),
        bytes(&changed(&rows(20_000, 6), 3)),
        [base.as_slice(), base.as_slice()].concat(),
        vec![0u8; 300_000],
        bytes(&rows(2000, 9)),
    ];
    for (i, data) in cases.iter().enumerate() {
        for level in [1, 3, 9] {
            let delta = encode_delta(&base, data, level).unwrap();
            let native = decode_delta(&base, &delta, data.len());
            let pure = ruzstd_decode_delta(&base, &delta, data.len());
            assert_eq!(
                native.as_deref(),
                Ok(data.as_slice()),
                "case {i} level {level}"
            );
            assert_eq!(
                pure.as_deref(),
                Ok(data.as_slice()),
                "case {i} level {level}"
            );
        }
    }
}

#[test]
fn sampling_in_lanes_gives_the_hashes_of_one_pass() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for len in [0, 1, 63, 255, 256, 257, 4096, 4099, 65_537, 300_000] {
        let d = &data[..len];
        let mut one_pass = Vec::new();
        let mut g: u64 = 0;
        for &b in d {
            g = (g << 1).wrapping_add(GEAR[b as usize]);
            if g >> SAMPLE_SHIFT == 0 {
                one_pass.push(g);
            }
        }
        let mut lanes = sampled_hashes(d);
        one_pass.sort_unstable();
        lanes.sort_unstable();
        assert_eq!(lanes, one_pass, "{len} bytes");
        assert!(len < 65_537 || !lanes.is_empty());
    }
}
