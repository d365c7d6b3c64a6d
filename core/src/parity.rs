//! Reed-Solomon parity over groups of data packs.
//!
//! A group is up to [`GROUP_SIZE`] data packs (its *members*, in order) and one parity shard.
//! The code is always RS(20, 1) over GF(2^8); member `i` is data shard `i`, zero-padded to the
//! longest member (`shard_len`), and missing positions (a group not yet full) are all-zero
//! shards. Because the code is linear and absent shards are zero, a group can grow by adding
//! the new member's contribution to the old parity, without reading the old members.
//!
//! ```text
//! parity/<id>.parity = the parity shard (shard_len bytes); id = SHA-256(file)
//! parity/<id>.group  = "CA-GRUP1" ‖ seal("ca parity group", JSON GroupDescription); id = SHA-256(file)
//! (under `packs/parity/` in repositories made before the `parity-dir` feature)
//! ```

pub use crate::layout::GROUP_MAGIC;
use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};

use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::layout::{self, Kind};
use crate::pack::pack_key;
use crate::storage::{put_exact, Storage, StorageError};

/// Data packs per group.
pub const GROUP_SIZE: usize = 20;
/// Parity shards per group.
pub const PARITY_SHARDS: usize = 1;
/// Seal label of group descriptions.
pub const GROUP_LABEL: &[u8] = b"ca parity group";
pub use crate::layout::{LEGACY_PARITY_PREFIX, PARITY_PREFIX};
/// Bytes per window when rebuilding a pack (bounds memory to ~21 windows).
const WINDOW: u64 = 1 << 20;

fn codec() -> ReedSolomon {
    ReedSolomon::new(GROUP_SIZE, PARITY_SHARDS).expect("RS(20,1) is a valid code")
}

/// Storage key of a new parity shard.
pub fn parity_key(id: &Id) -> String {
    format!("{PARITY_PREFIX}{}.parity", id.to_hex())
}

/// Storage key of a new group description.
pub fn group_key(id: &Id) -> String {
    format!("{PARITY_PREFIX}{}.group", id.to_hex())
}

/// One member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Data pack id.
    pub pack: Id,
    /// Its size in bytes.
    pub size: u64,
}

/// What a group description says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// Description format version (1).
    pub version: u32,
    /// Always `"reed-solomon-gf8"`.
    pub scheme: String,
    /// Data shards of the code (20); members fill the first positions.
    pub data_shards: u32,
    /// Parity shards of the code (1).
    pub parity_shards: u32,
    /// Length of every shard: the largest member size.
    pub shard_len: u64,
    /// Members in shard order.
    pub members: Vec<Member>,
    /// The parity shard's id (SHA-256 of the parity file).
    pub parity: Id,
}

/// A group as found in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Storage key of its description.
    pub key: String,
    /// The description.
    pub desc: GroupDescription,
}

impl Group {
    /// Storage key of its parity shard: beside the description (`parity/`, or
    /// `packs/parity/` for a group written before the `parity-dir` feature).
    pub fn parity_key(&self) -> String {
        let dir = self.key.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{}.parity", self.desc.parity.to_hex())
    }

    /// Position of `pack` among the members.
    pub fn position(&self, pack: &Id) -> Option<usize> {
        self.desc.members.iter().position(|m| &m.pack == pack)
    }
}

/// Encode a group description file; returns its id and bytes.
pub fn encode_group(keys: &Keys, desc: &GroupDescription, nonce: [u8; NONCE_LEN]) -> (Id, Vec<u8>) {
    let json = serde_json::to_vec(desc).expect("group description serializes");
    let mut out = GROUP_MAGIC.to_vec();
    out.extend_from_slice(&keys.seal(GROUP_LABEL, &json, nonce));
    (Id::sha256(&out), out)
}

/// Decode the group description stored under `key`.
pub fn decode_group(keys: &Keys, key: &str, data: &[u8]) -> Result<GroupDescription> {
    let bad = |reason: String| Error::corruption(format!("parity group {key}"), reason);
    let sealed = data
        .strip_prefix(GROUP_MAGIC.as_slice())
        .ok_or_else(|| bad("bad magic".into()))?;
    let json = keys.open(GROUP_LABEL, sealed).map_err(|r| bad(r.into()))?;
    let desc: GroupDescription =
        serde_json::from_slice(&json).map_err(|e| bad(format!("JSON: {e}")))?;
    if desc.version != 1
        || desc.data_shards as usize != GROUP_SIZE
        || desc.parity_shards as usize != PARITY_SHARDS
        || desc.members.is_empty()
        || desc.members.len() > GROUP_SIZE
        || desc.members.iter().any(|m| m.size > desc.shard_len)
        || desc.shard_len > 1 << 32
    {
        return Err(bad("inconsistent description".into()));
    }
    Ok(desc)
}

/// Every parity shard and group description (`parity/` and the legacy `packs/parity/`), with
/// sizes; foreign files in those folders are left out.
pub fn list_parity(storage: &dyn Storage) -> Result<Vec<(String, u64)>> {
    let mut listed = storage.list(PARITY_PREFIX)?;
    listed.extend(storage.list(LEGACY_PARITY_PREFIX)?);
    listed.retain(|(k, _)| layout::is(Kind::Parity, k) || layout::is(Kind::Group, k));
    Ok(listed)
}

/// Every group description under `packs/parity/`; unreadable ones are returned as errors
/// beside the good ones so that verify can report them and repair can replace them.
pub fn load_groups(storage: &dyn Storage, keys: &Keys) -> Result<(Vec<Group>, Vec<BadGroup>)> {
    load_groups_with(storage, keys, false)
}

/// [`load_groups`], skipping descriptions in an archive storage class when `skip_archived`
/// (ingest: it only looks for a group to extend, and starts a new one otherwise); otherwise
/// such a description is an error (`StorageError::Archived`): verify, repair and prune must not
/// take its packs for unprotected.
pub fn load_groups_with(
    storage: &dyn Storage,
    keys: &Keys,
    skip_archived: bool,
) -> Result<(Vec<Group>, Vec<BadGroup>)> {
    let mut groups = Vec::new();
    let mut bad = Vec::new();
    let mut listed = list_parity(storage)?;
    listed.sort();
    for (key, _) in layout::only(Kind::Group, listed) {
        let data = match storage.get(&key) {
            Ok(d) => d,
            Err(StorageError::NotFound(_)) => continue,
            Err(StorageError::Archived { .. }) if skip_archived => continue,
            Err(e @ StorageError::Archived { .. }) => return Err(e.into()),
            // One description that cannot be read (an I/O error) is a bad one: its packs are
            // grouped anew by repair, as for a damaged description.
            Err(e) => {
                let why = Error::corruption(
                    format!("parity group {key}"),
                    format!("cannot be read: {e}"),
                );
                bad.push((key, why));
                continue;
            }
        };
        let id_ok = layout::classify(&key)
            .and_then(|(_, id)| id)
            .is_some_and(|id| id == Id::sha256(&data));
        if !id_ok {
            let e = Error::corruption(
                format!("parity group {key}"),
                "content does not hash to its name",
            );
            bad.push((key, e));
            continue;
        }
        match decode_group(keys, &key, &data) {
            Ok(desc) => groups.push(Group { key, desc }),
            Err(e) => bad.push((key, e)),
        }
    }
    Ok((groups, bad))
}

/// A group description that cannot be used: its key and what is wrong with it.
pub type BadGroup = (String, Error);

/// Parity being computed over members added one after another.
#[derive(Debug)]
pub struct ParityBuilder {
    members: Vec<Member>,
    parity: Vec<u8>,
    /// The description this builder extends (to be removed once the new one is stored).
    pub replaces: Option<Group>,
}

impl Default for ParityBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ParityBuilder {
    /// A group with no member.
    pub fn new() -> Self {
        ParityBuilder {
            members: Vec::new(),
            parity: Vec::new(),
            replaces: None,
        }
    }

    /// Continue an existing group from its stored parity.
    pub fn extend(group: Group, parity: Vec<u8>) -> Self {
        ParityBuilder {
            members: group.desc.members.clone(),
            parity,
            replaces: Some(group),
        }
    }

    /// Members so far.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether the group has all its members.
    pub fn is_full(&self) -> bool {
        self.members.len() >= GROUP_SIZE
    }

    /// Add the next member's bytes.
    pub fn add(&mut self, pack: Id, data: &[u8]) {
        self.add_with(data, || pack);
    }

    /// Add the next member's bytes, computing its id (SHA-256 of `data`) while the parity is
    /// updated, on another core where the build allows; returns the id.
    pub fn add_hashing(&mut self, data: &[u8]) -> Id {
        self.add_with(data, || Id::sha256(data))
    }

    fn add_with(&mut self, data: &[u8], id: impl FnOnce() -> Id + Send) -> Id {
        assert!(
            !self.is_full(),
            "a parity group holds at most {GROUP_SIZE} packs"
        );
        let position = self.members.len();
        if data.len() > self.parity.len() {
            // Old members are zero past their end, so their contribution there is zero.
            self.parity.resize(data.len(), 0);
        }
        let mut parity = [std::mem::take(&mut self.parity)];
        let (pack, ()) = crate::parallel::join(id, || {
            if parity[0].is_empty() {
                // Every member so far is empty (a truncated pack verify is looking at): there
                // is nothing to encode, and the codec refuses empty shards.
            } else if data.len() == parity[0].len() {
                add_shard(position, data, &mut parity);
            } else {
                let mut padded = data.to_vec();
                padded.resize(parity[0].len(), 0);
                add_shard(position, &padded, &mut parity);
            }
        });
        let [p] = parity;
        self.parity = p;
        self.members.push(Member {
            pack,
            size: data.len() as u64,
        });
        pack
    }

    /// The parity shard and the description that goes with it.
    pub fn finish(self) -> (Vec<u8>, GroupDescription) {
        let desc = GroupDescription {
            version: 1,
            scheme: "reed-solomon-gf8".into(),
            data_shards: GROUP_SIZE as u32,
            parity_shards: PARITY_SHARDS as u32,
            shard_len: self.parity.len() as u64,
            members: self.members,
            parity: Id::sha256(&self.parity),
        };
        (self.parity, desc)
    }

    /// Store the parity shard and the description, then remove the description (and parity)
    /// this one replaces. Returns the new group.
    pub fn store(
        self,
        storage: &dyn Storage,
        keys: &Keys,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Option<Group>> {
        if self.is_empty() {
            return Ok(None);
        }
        let replaces = self.replaces.clone();
        let (parity, desc) = self.finish();
        put_exact(storage, &parity_key(&desc.parity), &parity)?;
        let (id, data) = encode_group(keys, &desc, nonce);
        let key = group_key(&id);
        put_exact(storage, &key, &data)?;
        if let Some(old) = replaces {
            // The rebuilt group may share its parity shard (or, unencrypted, its whole
            // description) with the one it replaces: never delete what the new group uses.
            if old.key != key {
                delete_quietly(storage, &old.key)?;
            }
            if old.parity_key() != parity_key(&desc.parity) {
                delete_quietly(storage, &old.parity_key())?;
            }
        }
        Ok(Some(Group { key, desc }))
    }
}

/// Add data shard `position`'s contribution to the parity (position 0 overwrites, so a fresh
/// group's parity starts as the first member's contribution).
fn add_shard(position: usize, data: &[u8], parity: &mut [Vec<u8>; 1]) {
    codec()
        .encode_single_sep(position, data, parity)
        .expect("shards have equal length");
}

fn delete_quietly(storage: &dyn Storage, key: &str) -> Result<()> {
    match storage.delete(key) {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove a group's description, then its parity shard (unless another group uses it).
pub fn remove_group(storage: &dyn Storage, group: &Group) -> Result<()> {
    delete_quietly(storage, &group.key)?;
    delete_quietly(storage, &group.parity_key())
}

/// Rebuild member `missing` of `group` from the other members and the parity, reading
/// `WINDOW`-sized column slices so that memory stays bounded. The result is checked against
/// the pack id; `Err` names what is missing or inconsistent.
pub fn rebuild_member(storage: &dyn Storage, group: &Group, missing: usize) -> Result<Vec<u8>> {
    let desc = &group.desc;
    let target = desc.members[missing];
    let rs = codec();
    let mut out = Vec::with_capacity(target.size as usize);
    let mut offset = 0u64;
    while offset < target.size {
        let width = WINDOW.min(desc.shard_len - offset) as usize;
        let mut shards: Vec<Option<Vec<u8>>> = Vec::with_capacity(GROUP_SIZE + 1);
        for (i, m) in desc.members.iter().enumerate() {
            if i == missing {
                shards.push(None);
                continue;
            }
            let mut w = if offset < m.size {
                storage
                    .get_range(&pack_key(&m.pack), offset, width as u64)
                    .map_err(|e| match e {
                        // In an archive class: intact, only not readable now.
                        StorageError::Archived { .. } => Error::Storage(e),
                        e => Error::corruption(
                            format!("pack {}", m.pack),
                            format!("needed to rebuild pack {}: {e}", target.pack),
                        ),
                    })?
            } else {
                Vec::new()
            };
            let expect = m.size.saturating_sub(offset).min(width as u64) as usize;
            if w.len() != expect {
                return Err(Error::corruption(
                    format!("pack {}", m.pack),
                    format!("truncated; needed to rebuild pack {}", target.pack),
                ));
            }
            w.resize(width, 0);
            shards.push(Some(w));
        }
        shards.resize(GROUP_SIZE, Some(vec![0u8; width]));
        let parity = storage
            .get_range(&group.parity_key(), offset, width as u64)
            .map_err(|e| match e {
                StorageError::Archived { .. } => Error::Storage(e),
                e => Error::corruption(format!("parity {}", desc.parity), e.to_string()),
            })?;
        if parity.len() != width {
            return Err(Error::corruption(
                format!("parity {}", desc.parity),
                "truncated",
            ));
        }
        shards.push(Some(parity));
        rs.reconstruct_data(&mut shards).map_err(|e| {
            Error::corruption(
                format!("parity group {}", group.key),
                format!("cannot reconstruct: {e:?}"),
            )
        })?;
        let rebuilt = shards[missing].take().expect("reconstructed");
        let keep = (target.size - offset).min(width as u64) as usize;
        out.extend_from_slice(&rebuilt[..keep]);
        offset += width as u64;
    }
    if Id::sha256(&out) != target.pack {
        return Err(Error::corruption(
            format!("pack {}", target.pack),
            "rebuilt from parity but the result does not match its id (another member or the parity is damaged too)",
        ));
    }
    Ok(out)
}

/// Recompute a group's parity from member bytes fed in order; for verification.
pub fn recompute(members: impl Iterator<Item = (Id, Vec<u8>)>) -> Vec<u8> {
    let mut b = ParityBuilder::new();
    for (id, data) in members {
        b.add(id, &data);
    }
    b.finish().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn pack(i: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i))
            .collect()
    }

    #[test]
    fn an_empty_member_adds_nothing_and_never_panics() {
        // A truncated pack seen by verify: first, among others, or last. Its contribution is
        // that of a pack of zeros: the others' is the parity.
        for order in [[0usize, 1, 2], [1, 0, 2], [1, 2, 0]] {
            let data = [Vec::new(), pack(1, 1000), pack(2, 700)];
            let mut with_empty = ParityBuilder::new();
            let mut with_zeros = ParityBuilder::new();
            for i in order {
                with_empty.add(Id::sha256(&data[i]), &data[i]);
                let zeros = vec![0u8; 1000];
                with_zeros.add(
                    Id::sha256(&data[i]),
                    if data[i].is_empty() { &zeros } else { &data[i] },
                );
            }
            assert_eq!(with_empty.finish().0, with_zeros.finish().0, "{order:?}");
        }
        let mut alone = ParityBuilder::new();
        alone.add(Id::sha256(b""), b"");
        assert!(alone.finish().0.is_empty());
    }

    #[test]
    fn growing_a_group_equals_encoding_it_at_once_and_rebuilds_any_member() {
        let storage = MemoryStorage::new();
        let keys = Keys::plain();
        let packs: Vec<Vec<u8>> = (0..7)
            .map(|i| pack(i, 3_000_000 + i as usize * 77_777))
            .collect();
        let ids: Vec<Id> = packs.iter().map(|p| Id::sha256(p)).collect();
        for (id, p) in ids.iter().zip(&packs) {
            storage.put(&pack_key(id), p).unwrap();
        }
        // Three members, stored; then extended by four more.
        let mut b = ParityBuilder::new();
        for i in 0..3 {
            b.add(ids[i], &packs[i]);
        }
        let g = b.store(&storage, &keys, [0; 12]).unwrap().unwrap();
        let parity = storage.get(&parity_key(&g.desc.parity)).unwrap();
        let mut b = ParityBuilder::extend(g.clone(), parity);
        for i in 3..7 {
            b.add(ids[i], &packs[i]);
        }
        let g2 = b.store(&storage, &keys, [1; 12]).unwrap().unwrap();
        let (groups, bad) = load_groups(&storage, &keys).unwrap();
        assert!(bad.is_empty());
        assert_eq!(
            groups,
            vec![g2.clone()],
            "the extended group replaced the old one"
        );
        let once = recompute(ids.iter().copied().zip(packs.iter().cloned()));
        assert_eq!(storage.get(&parity_key(&g2.desc.parity)).unwrap(), once);
        for (missing, original) in packs.iter().enumerate() {
            assert_eq!(rebuild_member(&storage, &g2, missing).unwrap(), *original);
        }
        // Two losses cannot be rebuilt.
        storage.delete(&pack_key(&ids[2])).unwrap();
        assert!(rebuild_member(&storage, &g2, 5).is_err());
    }
}
