//! Snapshot manifests.
//!
//! ```text
//! snapshots/<id>.snapshot = "CA-SNAP1" ‖ seal("ca snapshot", JSON manifest);  id = SHA-256(file)
//! ```
//! The manifest is small: each item's chunk list lives in chunk-list blobs inside packs and
//! the manifest only names those blobs, so listing snapshots never reads a chunk list.

pub use crate::layout::{PENDING_PREFIX, SNAPSHOT_COPY_PREFIX, SNAPSHOT_MAGIC, SNAPSHOT_PREFIX};
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::{Deserialize, Serialize};

use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::validate::{
    validate_command, validate_host, validate_item_name, validate_item_type, validate_tags,
};

/// Seal label of snapshot files.
pub const SNAPSHOT_LABEL: &[u8] = b"ca snapshot";
/// Suffix of snapshot files.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// Chunk ids per chunk-list blob (1 MiB of ids).
pub const IDS_PER_LIST_BLOB: usize = 32 * 1024;

/// The storage key of a snapshot.
pub fn snapshot_key(id: &Id) -> String {
    format!("{SNAPSHOT_PREFIX}{}{SNAPSHOT_SUFFIX}", id.to_hex())
}

/// The snapshot id in a storage key, if it is one.
pub fn snapshot_id_of_key(key: &str) -> Option<Id> {
    Id::from_hex(
        key.strip_prefix(SNAPSHOT_PREFIX)?
            .strip_suffix(SNAPSHOT_SUFFIX)?,
    )
}

/// The storage key of a manifest's copy (feature `metadata-copies`).
pub fn snapshot_copy_key(id: &Id) -> String {
    format!("{SNAPSHOT_COPY_PREFIX}{}{SNAPSHOT_SUFFIX}", id.to_hex())
}

/// The snapshot id in the storage key of a manifest's copy, if it is one.
pub fn snapshot_id_of_copy_key(key: &str) -> Option<Id> {
    Id::from_hex(
        key.strip_prefix(SNAPSHOT_COPY_PREFIX)?
            .strip_suffix(SNAPSHOT_SUFFIX)?,
    )
}

/// The storage key of a manifest pending commit.
pub fn pending_snapshot_key(id: &Id) -> String {
    format!("{PENDING_PREFIX}{}{SNAPSHOT_SUFFIX}", id.to_hex())
}

/// The snapshot id of a pending manifest's key, if it is one.
pub fn pending_id_of_key(key: &str) -> Option<Id> {
    Id::from_hex(
        key.strip_prefix(PENDING_PREFIX)?
            .strip_suffix(SNAPSHOT_SUFFIX)?,
    )
}

/// One named stream inside a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Name, unique in the snapshot (e.g. `database.sql`).
    pub name: String,
    /// Free-form type (e.g. `database-dump`, `raw`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes of content.
    pub size: u64,
    /// Chunks of content.
    pub chunk_count: u64,
    /// Chunk-list blobs, in order; together they list the item's chunk ids.
    pub chunk_lists: Vec<Id>,
    /// The command whose standard output this item is, when it was backed up with
    /// `ingest --exec` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<ItemCommand>,
}

/// A command an item was produced by, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCommand {
    /// Its arguments, the program first.
    pub argv: Vec<String>,
    /// Its exit status (always 0 in a committed snapshot: a failed command commits nothing).
    pub exit_status: i32,
}

/// A snapshot manifest as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// Creation time (RFC 3339, microseconds, with the UTC offset given by the caller).
    pub created_at: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The host that made the snapshot (its hostname, or the name given with `--host`).
    /// Absent in snapshots written before hosts were recorded: they read as host unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Bytes of content over all items.
    pub original_size: u64,
    /// Bytes this snapshot added to the repository (new blobs as stored).
    pub stored_size: u64,
    /// Chunks over all items (a repeated chunk counts each time).
    pub chunk_count: u64,
    /// Chunks that were not in the repository before.
    pub new_chunks: u64,
    /// Chunks already in the repository (or earlier in this snapshot).
    pub reused_chunks: u64,
    /// New chunks stored as deltas against a similar stored chunk (0 in snapshots from before
    /// delta encoding).
    #[serde(default)]
    pub delta_chunks: u64,
    /// Bytes of content in those chunks.
    #[serde(default)]
    pub delta_original_size: u64,
    /// Bytes those chunks take stored (part of `stored_size`).
    #[serde(default)]
    pub delta_stored_size: u64,
    /// Items, in the order they were ingested.
    pub items: Vec<Item>,
}

/// A snapshot: its id and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// SHA-256 of the snapshot file.
    pub id: Id,
    /// Parsed `created_at`.
    pub time: DateTime<FixedOffset>,
    /// The manifest.
    pub manifest: Manifest,
}

impl Snapshot {
    /// The snapshot as every face shows it: the manifest's fields (snake_case, as stored) plus
    /// `id` (64 hex digits), with `host` always present (`null` when unknown). Python's
    /// `Snapshot`, the CLI's `--json` and the JS API (camelCased) are all read from this one
    /// object.
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.manifest).expect("a manifest always serializes");
        v["id"] = serde_json::Value::String(self.id.to_hex());
        v["host"] = self
            .manifest
            .host
            .clone()
            .map_or(serde_json::Value::Null, serde_json::Value::String);
        v
    }

    /// The item called `name`.
    pub fn item(&self, name: &str) -> Result<&Item> {
        self.manifest
            .items
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| Error::ItemNotFound {
                snapshot: self.id.to_hex(),
                item: name.to_string(),
                available: self.manifest.items.iter().map(|i| i.name.clone()).collect(),
            })
    }
}

/// Format a time as stored in manifests.
pub fn format_time(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Parse a time as stored in manifests (any RFC 3339 time).
pub fn parse_time(s: &str) -> std::result::Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|e| format!("bad time {s:?}: {e}"))
}

/// Encode a snapshot file; returns its id and bytes.
pub fn encode_snapshot(keys: &Keys, manifest: &Manifest, nonce: [u8; NONCE_LEN]) -> (Id, Vec<u8>) {
    let json = serde_json::to_vec(manifest).expect("a manifest always serializes");
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(&keys.seal(SNAPSHOT_LABEL, &json, nonce));
    (Id::sha256(&out), out)
}

/// Decode the snapshot file of snapshot `id`.
pub fn decode_snapshot(keys: &Keys, id: Id, data: &[u8]) -> Result<Snapshot> {
    let bad = |reason: String| Error::corruption(format!("snapshot {id}"), reason);
    if Id::sha256(data) != id {
        return Err(bad("file content does not hash to its id".into()));
    }
    let sealed = data
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or_else(|| bad("bad magic".into()))?;
    let json = keys
        .open(SNAPSHOT_LABEL, sealed)
        .map_err(|r| bad(r.into()))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| bad(format!("manifest JSON: {e}")))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(Error::Unsupported(format!(
            "snapshot {id} has manifest version {}",
            manifest.version
        )));
    }
    let time = parse_time(&manifest.created_at).map_err(bad)?;
    // A manifest is only as trustworthy as whoever could write the repository: names that are
    // unsafe as relative paths, control characters or duplicates are refused here, before any
    // caller uses them (restore_to, tar streams, listings).
    let mut names = std::collections::HashSet::new();
    for item in &manifest.items {
        validate_item_name(&item.name)
            .and_then(|()| validate_item_type(&item.kind))
            .and_then(|()| {
                item.command
                    .as_ref()
                    .map_or(Ok(()), |c| validate_command(&c.argv))
            })
            .map_err(|e| bad(format!("item: {e}")))?;
        if !names.insert(item.name.as_str()) {
            return Err(bad(format!("item {:?} appears twice", item.name)));
        }
    }
    validate_tags(&manifest.tags).map_err(|e| bad(format!("tags: {e}")))?;
    if let Some(h) = &manifest.host {
        validate_host(h).map_err(|e| bad(format!("host: {e}")))?;
    }
    Ok(Snapshot { id, time, manifest })
}
