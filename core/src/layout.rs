//! Which storage keys belong to a repository: every kind of object, its name pattern and the
//! magic its content starts with (docs/FORMAT.md, "Layout").
//!
//! A location may hold files of another program (a restic repository in the same prefix, a
//! stray upload). Readers look only at keys that match a pattern here, and cleanups delete a
//! file only when it is identifiably this repository's own: its name matches *and* its content
//! carries the kind's magic (or, for parity shards, which have none, hashes to the name), or
//! it is authenticated by the repository key. Everything else is *foreign*: never read, never
//! deleted, and named in the reports of `repair` and `prune`.

use crate::error::Result;
use crate::id::Id;
use crate::storage::{Storage, StorageError};

pub use crate::config::{CONFIG_COPY_KEY, CONFIG_COPY_MAGIC, CONFIG_KEY};
// The path prefixes and magics of every kind, defined here (and re-exported by the module of
// each format) so that this table depends on no format module.
/// Magic at the start of every index file.
pub const INDEX_MAGIC: &[u8; 8] = b"CA-INDX1";
/// Prefix of index files in storage.
pub const INDEX_PREFIX: &str = "index/";
/// Packs and their `.idx` files, fanned out by the first two hex digits of the pack id.
pub const PACK_DATA_PREFIX: &str = "packs/data/";
/// Magic at the start of every lock file.
pub const LOCK_MAGIC: &[u8; 8] = b"CA-LOCK1";
/// Prefix of lock files.
pub const LOCK_PREFIX: &str = "locks/";
/// Prefix of deletion notices.
pub const NOTICE_PREFIX: &str = "deleting/";
/// Magic at the start of every notice.
pub const NOTICE_MAGIC: &[u8; 8] = b"CA-DEL01";
/// Magic at the start of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"CA-PACK1";
/// Magic at the end of every pack.
pub const PACK_END_MAGIC: &[u8; 8] = b"CA-PEND1";
/// Magic at the start of every `.idx` file.
pub const IDX_MAGIC: &[u8; 8] = b"CA-IDX01";
/// Magic at the start of every group description.
pub const GROUP_MAGIC: &[u8; 8] = b"CA-GRUP1";
/// Magic at the start of every snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"CA-SNAP1";
/// Prefix of snapshot files in storage.
pub const SNAPSHOT_PREFIX: &str = "snapshots/";
/// Prefix of manifests an ingest has written but not yet committed (docs/FORMAT.md, commit
/// protocol): not snapshots, but prune keeps everything they reference.
pub const PENDING_PREFIX: &str = "snapshots/pending/";
/// Prefix of key files.
pub const KEYS_PREFIX: &str = "keys/";
/// Parity shards and group descriptions (format feature `parity-dir`: outside `packs/`, so
/// that an archive-class rule on `packs/` leaves what ingest reads in a readable class).
pub const PARITY_PREFIX: &str = "parity/";
/// Where repositories made before the `parity-dir` feature keep them (still read).
pub const LEGACY_PARITY_PREFIX: &str = "packs/parity/";
/// Copies of snapshot manifests (feature `metadata-copies`): `copies/snapshots/<id>.snapshot`,
/// byte for byte the manifest of the same name.
pub const SNAPSHOT_COPY_PREFIX: &str = "copies/snapshots/";
/// Copies of key files (feature `metadata-copies`): `copies/keys/<id>.key`, byte for byte the
/// key file of the same name.
pub const KEY_COPY_PREFIX: &str = "copies/keys/";

/// Every kind of object a repository holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `config.json`.
    Config,
    /// `keys/<id>.key`.
    Key,
    /// `packs/data/<xx>/<id>.pack`.
    Pack,
    /// `packs/data/<xx>/<id>.idx`.
    PackIdx,
    /// `parity/<id>.parity` (or `packs/parity/`).
    Parity,
    /// `parity/<id>.group` (or `packs/parity/`).
    Group,
    /// `index/<id>.index`.
    Index,
    /// `snapshots/<id>.snapshot`.
    Snapshot,
    /// `snapshots/pending/<id>.snapshot`.
    PendingSnapshot,
    /// `locks/<id>.lock`.
    Lock,
    /// `deleting/<id>.notice`.
    Notice,
    /// `copies/snapshots/<id>.snapshot`.
    SnapshotCopy,
    /// `copies/keys/<id>.key`.
    KeyCopy,
    /// `copies/config`.
    ConfigCopy,
}

/// The first 8 bytes of every object of a kind, where it has them (JSON files and parity
/// shards have none).
pub fn magic(kind: Kind) -> Option<&'static [u8; 8]> {
    Some(match kind {
        Kind::Pack => PACK_MAGIC,
        Kind::PackIdx => IDX_MAGIC,
        Kind::Group => GROUP_MAGIC,
        Kind::Index => INDEX_MAGIC,
        Kind::Snapshot | Kind::PendingSnapshot | Kind::SnapshotCopy => SNAPSHOT_MAGIC,
        Kind::Lock => LOCK_MAGIC,
        Kind::Notice => NOTICE_MAGIC,
        Kind::ConfigCopy => CONFIG_COPY_MAGIC,
        Kind::Config | Kind::Key | Kind::KeyCopy | Kind::Parity => return None,
    })
}

/// The id in `<64 lowercase hex>.<ext>`.
fn hex_name(name: &str, ext: &str) -> Option<Id> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 64 || !stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Id::from_hex(stem)
}

/// The kind of the object at `key` and the id in its name (None for `config.json`), or None
/// when the key is not one this repository writes.
pub fn classify(key: &str) -> Option<(Kind, Option<Id>)> {
    if key == CONFIG_KEY {
        return Some((Kind::Config, None));
    }
    if key == CONFIG_COPY_KEY {
        return Some((Kind::ConfigCopy, None));
    }
    let parts: Vec<&str> = key.split('/').collect();
    let found = match parts.as_slice() {
        ["keys", name] => (Kind::Key, hex_name(name, "key")?),
        ["packs", "data", xx, name] => {
            let (kind, id) = match hex_name(name, "pack") {
                Some(id) => (Kind::Pack, id),
                None => (Kind::PackIdx, hex_name(name, "idx")?),
            };
            if *xx != &id.to_hex()[..2] {
                return None;
            }
            (kind, id)
        }
        ["parity", name] | ["packs", "parity", name] => match hex_name(name, "parity") {
            Some(id) => (Kind::Parity, id),
            None => (Kind::Group, hex_name(name, "group")?),
        },
        ["index", name] => (Kind::Index, hex_name(name, "index")?),
        ["snapshots", name] => (Kind::Snapshot, hex_name(name, "snapshot")?),
        ["snapshots", "pending", name] => (Kind::PendingSnapshot, hex_name(name, "snapshot")?),
        ["copies", "snapshots", name] => (Kind::SnapshotCopy, hex_name(name, "snapshot")?),
        ["copies", "keys", name] => (Kind::KeyCopy, hex_name(name, "key")?),
        ["locks", name] => (Kind::Lock, hex_name(name, "lock")?),
        ["deleting", name] => (Kind::Notice, hex_name(name, "notice")?),
        _ => return None,
    };
    Some((found.0, Some(found.1)))
}

/// Whether `key` is a name this repository writes for `kind`.
pub fn is(kind: Kind, key: &str) -> bool {
    classify(key).is_some_and(|(k, _)| k == kind)
}

/// The keys of a listing that are of `kind` (the others under the same prefix are foreign).
pub fn only<T>(kind: Kind, listed: Vec<(String, T)>) -> Vec<(String, T)> {
    listed.into_iter().filter(|(k, _)| is(kind, k)).collect()
}

/// Whether `data` (the whole object or at least its first 8 bytes) starts with the magic of
/// `kind`.
pub fn has_magic(kind: Kind, data: &[u8]) -> bool {
    magic(kind).is_some_and(|m| data.starts_with(m))
}

/// Whether the object at `key` is identifiably this repository's own although it may not
/// authenticate (a damaged file): its name matches a kind with a magic and its first bytes
/// are that magic. Parity shards (no magic) must hash to their name. Used before deleting a
/// file the repository key cannot vouch for; a missing object is not ours to delete. One that
/// is named as ours but cannot be read at all (an I/O error) counts as ours: damage, which
/// the cleanups that ask must be able to remove.
pub fn owned(storage: &dyn Storage, key: &str) -> Result<bool> {
    let Some((kind, id)) = classify(key) else {
        return Ok(false);
    };
    let read = |length: Option<u64>| match length {
        Some(n) => storage.get_range(key, 0, n),
        None => storage.get(key),
    };
    let result = match (magic(kind), kind) {
        (Some(m), _) => read(Some(m.len() as u64)).map(|head| head == m.as_slice()),
        (None, Kind::Parity) => read(None).map(|data| Some(Id::sha256(&data)) == id),
        (None, _) => Ok(false),
    };
    match result {
        Ok(ours) => Ok(ours),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e @ StorageError::Archived { .. }) => Err(e.into()),
        Err(_) => Ok(true),
    }
}

/// Every key at the location that this repository does not write, sorted (what cleanups
/// leave alone and report).
pub fn foreign(storage: &dyn Storage) -> Result<Vec<String>> {
    let mut out: Vec<String> = storage
        .list("")?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| classify(k).is_none())
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_pattern_and_nothing_else_matches() {
        let h = "ab".repeat(32);
        for (key, kind) in [
            (format!("keys/{h}.key"), Kind::Key),
            (format!("packs/data/ab/{h}.pack"), Kind::Pack),
            (format!("packs/data/ab/{h}.idx"), Kind::PackIdx),
            (format!("parity/{h}.parity"), Kind::Parity),
            (format!("packs/parity/{h}.group"), Kind::Group),
            (format!("index/{h}.index"), Kind::Index),
            (format!("snapshots/{h}.snapshot"), Kind::Snapshot),
            (
                format!("snapshots/pending/{h}.snapshot"),
                Kind::PendingSnapshot,
            ),
            (format!("locks/{h}.lock"), Kind::Lock),
            (format!("deleting/{h}.notice"), Kind::Notice),
            (format!("copies/snapshots/{h}.snapshot"), Kind::SnapshotCopy),
            (format!("copies/keys/{h}.key"), Kind::KeyCopy),
        ] {
            assert_eq!(classify(&key).map(|c| c.0), Some(kind), "{key}");
        }
        assert_eq!(classify("config.json"), Some((Kind::Config, None)));
        assert_eq!(classify("copies/config"), Some((Kind::ConfigCopy, None)));
        // restic's layout, wrong fan-out, upper case, extra levels: foreign.
        for key in [
            "config".to_string(),
            format!("keys/{h}"),
            format!("index/{h}"),
            format!("data/ab/{h}"),
            format!("snapshots/{h}"),
            format!("locks/{h}"),
            format!("packs/data/cd/{h}.pack"),
            format!("index/{}.index", h.to_uppercase()),
            format!("index/x/{h}.index"),
            "index/notes.txt".to_string(),
        ] {
            assert_eq!(classify(&key), None, "{key}");
        }
    }
}
