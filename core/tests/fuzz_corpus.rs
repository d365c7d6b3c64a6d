//! Hostile input on stable Rust: every fuzz target of `containerarchive_core::fuzzing` runs over
//! the corpus committed under `core/fuzz/corpus/<target>/` (grown by cargo-fuzz runs, see
//! docs/RELIABILITY.md), over valid seeds taken from real repositories, and over deterministic
//! mutations of those seeds (bit flips, boundary values in length fields, truncation,
//! insertion, deletion, splicing). No input may panic.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use containerarchive_core::fuzzing::{seeds, Target, TARGETS};

/// Mutations tried per seed.
const MUTATIONS: usize = 3000;

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u32; 9] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x00ff_ffff,
    0x0100_0000,
    0x7fff_ffff,
    0xffff_ffff,
];

/// One mutation of `seed`; the first byte (the input mode) is kept so both modes stay covered.
fn mutate(seed: &[u8], other: &[u8], rng: &mut Xorshift) -> Vec<u8> {
    let mut v = seed.to_vec();
    if v.len() < 2 {
        v.push(rng.next() as u8);
        return v;
    }
    let at = 1 + rng.below(v.len() - 1);
    match rng.below(7) {
        0 => v[at] ^= 1 << rng.below(8),
        1 => {
            // A boundary value over a (possibly) length field, little-endian.
            let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            for (i, b) in value.iter().enumerate() {
                if let Some(slot) = v.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        2 => v.truncate(at),
        3 => {
            let n = 1 + rng.below(64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            v.splice(at..at, bytes);
        }
        4 => {
            let end = (at + 1 + rng.below(64)).min(v.len());
            v.drain(at..end);
        }
        5 => {
            // Splice in the tail of another seed of the same target.
            let from = rng.below(other.len());
            v.truncate(at);
            v.extend_from_slice(&other[from..]);
        }
        _ => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = 1 + rng.below(v.len() - 1);
                v[i] = rng.next() as u8;
            }
        }
    }
    v
}

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn run(name: &str, target: Target, input: &[u8], failures: &mut Vec<String>) {
    IN_TARGET.with(|t| t.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| target(input)));
    IN_TARGET.with(|t| t.set(false));
    if outcome.is_err() {
        let shown: String = input.iter().take(64).map(|b| format!("{b:02x}")).collect();
        let why: String = LAST_PANIC.with(|p| p.borrow().chars().take(400).collect());
        failures.push(format!(
            "target {name} panicked on {} bytes ({shown}…): {why}",
            input.len()
        ));
    }
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_parser_survives_the_committed_corpus_and_mutated_seeds() {
    let seeds = seeds();
    let corpora: Vec<Vec<PathBuf>> = TARGETS.iter().map(|(name, _)| corpus_files(name)).collect();
    for (&(name, _), corpus) in TARGETS.iter().zip(&corpora) {
        assert!(
            seeds.iter().any(|(t, _)| *t == name),
            "no seed for target {name}"
        );
        assert!(
            !corpus.is_empty(),
            "the committed corpus of {name} is empty"
        );
    }
    // A target's panic is recorded (with where and why) and listed at the end; any other
    // panic is printed as usual.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_TARGET.with(|t| t.get()) {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
        } else {
            default_hook(info);
        }
    }));
    let mut failures = Vec::new();
    let mut executions = 0usize;
    for (&(name, target), corpus) in TARGETS.iter().zip(&corpora) {
        let mine: Vec<&Vec<u8>> = seeds
            .iter()
            .filter(|(t, _)| *t == name)
            .map(|(_, s)| s)
            .collect();
        for file in corpus {
            run(name, target, &std::fs::read(file).unwrap(), &mut failures);
            executions += 1;
        }
        let mut rng = Xorshift(0x5eed ^ (name.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for seed in &mine {
            run(name, target, seed, &mut failures);
            for _ in 0..MUTATIONS {
                let other = mine[rng.below(mine.len())];
                run(name, target, &mutate(seed, other, &mut rng), &mut failures);
            }
            executions += 1 + MUTATIONS;
        }
    }
    println!("{executions} inputs over {} targets", TARGETS.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_seed_is_accepted_by_its_parser() {
    // Seeds that the parsers reject would leave the mutations above exploring nothing but the
    // first check; this keeps the seeds honest as the format evolves.
    let seeds = seeds();
    for &(name, target) in TARGETS {
        for (i, (_, seed)) in seeds.iter().filter(|(t, _)| *t == name).enumerate() {
            assert!(target(seed), "seed {i} of target {name} is rejected");
        }
    }
}

#[test]
fn both_zstd_decoders_agree_on_every_frame_the_engine_wrote() {
    // The browser restores with the pure-Rust decoder, the CLI with libzstd.
    use containerarchive_core::compress::{decompress, ruzstd_decompress, Compression};
    let mut frames = 0;
    for (_, seed) in seeds().iter().filter(|(t, _)| *t == "blob") {
        if Compression::from_code(seed[0]) != Some(Compression::Zstd) {
            continue;
        }
        let raw_len = u32::from_le_bytes([seed[1], seed[2], seed[3], 0]) as usize;
        let native = decompress(Compression::Zstd, &seed[4..], raw_len).unwrap();
        assert_eq!(ruzstd_decompress(&seed[4..], raw_len).unwrap(), native);
        frames += 1;
    }
    assert!(frames > 0, "the seeds hold zstd frames");
}
