//! `config.json`: the repository's settings, readable without a key.

use serde::{Deserialize, Serialize};

use crate::compress::Compression;

/// The format name in every `config.json`.
pub const FORMAT_NAME: &str = "containerarchive";
/// The repository format version this build writes. Version 2 is version 1 plus the
/// `features` lists; this build reads both.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads (and upgrades on its first write).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Feature: prune announces deletions in `deleting/` and ingests commit through
/// `snapshots/pending/` with the commit check (docs/FORMAT.md). Required to write: a binary
/// that does not know it would prune without notices and commit without the check.
pub const FEATURE_DELETION_NOTICES: &str = "deletion-notices";
/// Feature: parity shards and group descriptions are written under `parity/` (outside
/// `packs/`, so that an archive-class rule on `packs/` leaves them readable for ingest);
/// readers look in both places. Required to write: an older binary would keep writing groups
/// to `packs/parity/` and never see (nor update) those under `parity/` when it prunes.
pub const FEATURE_PARITY_DIR: &str = "parity-dir";
/// Feature: new chunks may be stored as deltas against a similar stored chunk, and pack
/// headers, `.idx` and index files may carry an extras table (bases and resemblance features;
/// docs/FORMAT.md, "Delta blobs"). Required to read: an older binary cannot decode a delta,
/// and its prune would delete bases that deltas still need. Only repositories that turned
/// delta encoding on carry it (`init --delta`, the default, or `Repository::enable_delta`).
pub const FEATURE_DELTA: &str = "delta";
/// Feature: every snapshot manifest has a byte-identical copy under `copies/snapshots/`
/// (docs/FORMAT.md, "Metadata copies"), which readers use when the manifest is missing or
/// damaged, and which `repair` restores from. Required to write: an older binary's prune would
/// delete a manifest but not its copy, and a repair would then bring back a snapshot whose
/// data is gone. Added by `init` and by `repair` (once it has copied every manifest), never by
/// the automatic upgrade.
pub const FEATURE_METADATA_COPIES: &str = "metadata-copies";
/// Every feature this build knows, to read and to write.
pub const KNOWN_FEATURES: &[&str] = &[
    FEATURE_DELETION_NOTICES,
    FEATURE_PARITY_DIR,
    FEATURE_DELTA,
    FEATURE_METADATA_COPIES,
];
/// The features every write of this build brings a repository up to (the others are chosen).
pub const ALWAYS_WRITTEN: &[&str] = &[FEATURE_DELETION_NOTICES, FEATURE_PARITY_DIR];
/// Storage key of the config.
pub const CONFIG_KEY: &str = "config.json";
/// Storage key of the config's sealed copy (feature `metadata-copies`).
pub const CONFIG_COPY_KEY: &str = "copies/config";
/// Magic at the start of the config's sealed copy.
pub const CONFIG_COPY_MAGIC: &[u8; 8] = b"CA-CONF1";
/// Seal label of the config's copy.
pub const CONFIG_COPY_LABEL: &[u8] = b"ca config";

/// `copies/config` for `config.json`'s bytes `json` of repository `repo_id`:
/// `"CA-CONF1" ‖ repository id (32 bytes) ‖ seal("ca config", json)` (docs/FORMAT.md, "Metadata
/// copies"). The seal's nonce is the first 12 bytes of SHA-256("ca config nonce" ‖ json): the
/// same config always gives the same bytes, and two different configs never share a nonce.
pub fn encode_config_copy(keys: &crate::crypto::Keys, repo_id: &crate::Id, json: &[u8]) -> Vec<u8> {
    let digest = crate::Id::sha256(&[b"ca config nonce".as_slice(), json].concat());
    let mut nonce = [0u8; crate::crypto::NONCE_LEN];
    nonce.copy_from_slice(&digest.0[..crate::crypto::NONCE_LEN]);
    let mut out = CONFIG_COPY_MAGIC.to_vec();
    out.extend_from_slice(&repo_id.0);
    out.extend_from_slice(&keys.seal(CONFIG_COPY_LABEL, json, nonce));
    out
}

/// The repository id a config copy names (not authenticated until its seal opens with the
/// keys of that id) and its sealed part; `None` when it is too short or lacks the magic.
pub fn config_copy_parts(data: &[u8]) -> Option<(crate::Id, &[u8])> {
    let rest = data.strip_prefix(CONFIG_COPY_MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (id, sealed) = rest.split_at(32);
    Some((crate::Id(id.try_into().ok()?), sealed))
}

/// Content-defined chunking parameters (FastCDC 2020, normalization level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerConfig {
    /// Always `"fastcdc-2020"`.
    pub algorithm: ChunkerAlgorithm,
    /// Smallest chunk in bytes (except the last of an item).
    pub min_size: u32,
    /// Target average chunk size in bytes.
    pub avg_size: u32,
    /// Largest chunk in bytes.
    pub max_size: u32,
}

/// The chunking algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    /// FastCDC as published in 2020, gear table of the `fastcdc` crate, normalization level 1.
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_size: 64 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
        }
    }
}

/// Compression settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionConfig {
    /// Algorithm used for new chunks.
    pub algorithm: Compression,
    /// Its level.
    pub level: i32,
}

/// The whole `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Repository id (64 hex); salts the key derivation.
    pub id: String,
    /// Chunking.
    pub chunker: ChunkerConfig,
    /// Compression of new chunks.
    pub compression: CompressionConfig,
    /// `"aes-256-gcm"` or `"none"`.
    pub encryption: String,
    /// `"hmac-sha256"` (encrypted) or `"sha256"`.
    pub chunk_id: String,
    /// Target pack size in bytes.
    pub pack_size: u64,
    /// Parity.
    pub parity: ParityConfig,
    /// Features a binary must know to read, or to write to, this repository (version 2 on).
    #[serde(default, skip_serializing_if = "Features::is_empty")]
    pub features: Features,
}

/// Required features, by name. A binary refuses to open a repository with a `read` feature it
/// does not know, and refuses to change one (lock, ingest, prune, repair…) with an unknown
/// `write` feature; binaries older than version 2 refuse any version-2 repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// Needed to read anything correctly.
    #[serde(default)]
    pub read: Vec<String>,
    /// Needed to write (and so to lock) anything.
    #[serde(default)]
    pub write: Vec<String>,
}

impl Features {
    /// No feature required.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

fn unknown(list: &[String]) -> Vec<&str> {
    list.iter()
        .map(String::as_str)
        .filter(|f| !KNOWN_FEATURES.contains(f))
        .collect()
}

/// Parity settings: Reed-Solomon over groups of data packs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityConfig {
    /// Always `"reed-solomon"`.
    pub scheme: String,
    /// Data packs per group.
    pub data_packs: u32,
    /// Parity packs per group.
    pub parity_packs: u32,
}

impl Default for ParityConfig {
    fn default() -> Self {
        ParityConfig {
            scheme: "reed-solomon".into(),
            data_packs: 20,
            parity_packs: 1,
        }
    }
}

impl Config {
    /// Whether this build may change the repository: it knows every `write` feature.
    pub fn check_writable(&self) -> Result<(), String> {
        let missing = unknown(&self.features.write);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the repository needs feature(s) {} to be written to, which this build does not know: use a newer containerarchive (reading still works)",
                missing.join(", ")
            ))
        }
    }

    /// Whether writers must follow the deletion-notice protocol already (else the first
    /// write upgrades the config).
    pub fn needs_upgrade(&self) -> bool {
        self.version < FORMAT_VERSION
            || ALWAYS_WRITTEN
                .iter()
                .any(|k| !self.features.write.iter().any(|f| f == k))
    }

    /// This config at the current version with every feature this build writes.
    pub fn upgraded(&self) -> Config {
        let mut c = self.clone();
        c.version = FORMAT_VERSION;
        for k in ALWAYS_WRITTEN {
            if !c.features.write.iter().any(|f| f == k) {
                c.features.write.push(k.to_string());
            }
        }
        c
    }

    /// Whether new chunks may be stored as deltas (the `delta` feature).
    pub fn delta(&self) -> bool {
        self.features.read.iter().any(|f| f == FEATURE_DELTA)
    }

    /// This config with delta encoding on: the `delta` feature required to read and to write.
    pub fn with_delta(&self) -> Config {
        let mut c = self.clone();
        c.version = FORMAT_VERSION;
        for list in [&mut c.features.read, &mut c.features.write] {
            if !list.iter().any(|f| f == FEATURE_DELTA) {
                list.push(FEATURE_DELTA.to_string());
            }
        }
        c
    }

    /// Whether metadata files have copies under `copies/` (the `metadata-copies` feature).
    pub fn copies(&self) -> bool {
        self.features
            .write
            .iter()
            .any(|f| f == FEATURE_METADATA_COPIES)
    }

    /// This config with metadata copies on (the `metadata-copies` write feature).
    pub fn with_copies(&self) -> Config {
        let mut c = self.upgraded();
        if !c.copies() {
            c.features.write.push(FEATURE_METADATA_COPIES.to_string());
        }
        c
    }

    /// Whether chunks and metadata are encrypted.
    pub fn encrypted(&self) -> bool {
        self.encryption != "none"
    }

    /// Check that this build can work with the config.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!(
                "not a containerarchive config (format {:?})",
                self.format
            ));
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.version) {
            return Err(format!(
                "repository format version {} (this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}): use a newer containerarchive",
                self.version
            ));
        }
        let missing = unknown(&self.features.read);
        if !missing.is_empty() {
            return Err(format!(
                "the repository needs feature(s) {} to be read, which this build does not know: use a newer containerarchive",
                missing.join(", ")
            ));
        }
        match (self.encryption.as_str(), self.chunk_id.as_str()) {
            ("aes-256-gcm", "hmac-sha256") | ("none", "sha256") => {}
            (e, c) => return Err(format!("unknown encryption {e:?} / chunk id {c:?}")),
        }
        if self.compression.algorithm == Compression::ZstdDelta {
            return Err(
                "compression \"zstd-delta\" is recorded per blob, not chosen for a repository"
                    .into(),
            );
        }
        let c = &self.chunker;
        if !(64..=c.avg_size).contains(&c.min_size)
            || c.avg_size > c.max_size
            || c.max_size > 8 * 1024 * 1024
        {
            return Err("chunker sizes out of range".into());
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.pack_size) {
            return Err("pack size out of range".into());
        }
        Ok(())
    }
}
