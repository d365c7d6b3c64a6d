//! Restore: a snapshot's item back as bytes, in order (`containerarchive restore`).
//!
//! [`Repository::item_reader`] returns an [`ItemReader`] that reads the item's chunk lists and
//! then its chunks in batches of about 8 MiB: blobs of one pack that lie close together are
//! read in one ranged request, all requests of a batch are issued at once, and blobs are
//! decoded on all cores, delta bases first ([`crate::scan::read_with_bases`]). A pack found gone (a prune moved its
//! blobs) makes the reader reload the index and try again before reporting it missing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::blob::decode_chunk_list;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::decode_index_file;
use crate::repo::{Repository, RELOCATE_ATTEMPTS};
use crate::scan::{read_with_bases, Unread};
use crate::snapshot::{Item, Snapshot};
use crate::storage::Storage;

/// Bytes of chunks restored per batch (decoded in parallel).
const RESTORE_BATCH_BYTES: u64 = 8 << 20;

impl<S: Storage> Repository<S> {
    /// Locate, fetch and decode blobs, in parallel where enabled. A pack found gone makes the
    /// index be read again (a prune in another process moved its blobs to new packs and wrote
    /// the new index before deleting the old packs) and the read retried.
    fn read_blobs(&self, ids: &[Id], what: &dyn Fn(&Id) -> String) -> Result<Vec<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            match self.read_blobs_once(ids)? {
                Ok(blobs) => return Ok(blobs),
                Err(_) if attempt < RELOCATE_ATTEMPTS => {
                    attempt += 1;
                    self.forget_index();
                }
                Err(Missing::Chunk(id)) => return Err(self.not_found_error(&id, &what(&id))),
                Err(Missing::Pack(pack, id)) => {
                    return Err(Error::corruption(
                        format!("pack {pack}"),
                        format!(
                        "missing (it holds chunk {id} of {}), also after reading the index again",
                        what(&id)
                    ),
                    ))
                }
            }
        }
    }

    /// One attempt of [`Repository::read_blobs`]: the blobs, or what was missing (a chunk the
    /// index does not know, a pack that is gone) so that the caller may reload and retry.
    /// The bases of delta chunks (and theirs, …) are read in the same requests and decoded
    /// first ([`read_with_bases`]).
    fn read_blobs_once(&self, ids: &[Id]) -> Result<std::result::Result<Vec<Vec<u8>>, Missing>> {
        let (locs, bases) = {
            let guard = self.index()?;
            let index = guard.as_ref().expect("index loaded");
            let mut locs = Vec::with_capacity(ids.len());
            for id in ids {
                match index.get(id) {
                    Some(loc) => locs.push(loc),
                    None => return Ok(Err(Missing::Chunk(*id))),
                }
            }
            let bases = index.closure_locations(ids.iter().copied());
            (locs, bases)
        };
        let mut read = read_with_bases(
            self.storage(),
            self.keys(),
            &locs,
            |id| bases.get(id).copied(),
            false,
            true,
        );
        // What the index may explain first (another reading of it may find the chunk), then
        // damage; a chunk left unread only for its base has its cause listed too.
        let mut failure = None;
        for (id, why) in read.unread {
            match why {
                Unread::NotIndexed => return Ok(Err(Missing::Chunk(id))),
                Unread::PackMissing(pack) => return Ok(Err(Missing::Pack(pack, id))),
                Unread::Failed(e) => failure = failure.or(Some(e)),
                Unread::BaseUnread(base) => {
                    failure = failure.or(Some(Error::corruption(
                        format!("chunk {id}"),
                        format!("its base chunk {base} cannot be decoded (its bases form a cycle)"),
                    )))
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Each plaintext moved out at its last use (a chunk may repeat within a batch).
        let mut uses: HashMap<Id, usize> = HashMap::new();
        for id in ids {
            *uses.entry(*id).or_default() += 1;
        }
        let blobs = ids
            .iter()
            .map(|id| {
                let left = uses.get_mut(id).expect("counted");
                *left -= 1;
                let plain = if *left == 0 {
                    read.plain.remove(id)
                } else {
                    read.plain.get(id).cloned()
                };
                plain.map(Arc::unwrap_or_clone).ok_or_else(|| {
                    Error::corruption(format!("chunk {id}"), "was read but not decoded")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Ok(blobs))
    }

    /// Why blob `id` cannot be read: the pack an index file names for it is missing, or no
    /// index file names it at all. Reads the index files again (an error path only).
    fn not_found_error(&self, id: &Id, what: &str) -> Error {
        let storage = self.storage();
        let listed = crate::index::list_index_files(storage).unwrap_or_default();
        for (key, _) in listed {
            let Ok(data) = storage.get(&key) else {
                continue;
            };
            let Ok(packs) = decode_index_file(self.keys(), &key, &data) else {
                continue;
            };
            if let Some(p) = packs.iter().find(|p| p.entries.iter().any(|e| e.id == *id)) {
                return Error::corruption(
                    format!("pack {}", p.id),
                    format!("missing (it holds chunk {id} of {what})"),
                );
            }
        }
        Error::corruption(what, format!("chunk {id} is not in the index"))
    }

    /// A reader over one item of a snapshot (the index is first brought up to date).
    ///
    /// # Errors
    /// [`Error::ItemNotFound`]; [`Error::Storage`].
    pub fn item_reader(&self, snapshot: &Snapshot, item: &str) -> Result<ItemReader<S>> {
        self.refresh_index()?;
        Ok(ItemReader {
            repo: self.clone(),
            snapshot: snapshot.id,
            item: snapshot.item(item)?.clone(),
            list_pos: 0,
            ids: Vec::new(),
            id_pos: 0,
            produced: 0,
            chunks: 0,
        })
    }
}

/// What a read found missing.
enum Missing {
    /// A chunk no loaded index file names.
    Chunk(Id),
    /// A pack that is gone (with a chunk it held).
    Pack(Id, Id),
}

/// Streams the content of one item, chunk by chunk, each checked against its id.
pub struct ItemReader<S: Storage> {
    repo: Repository<S>,
    snapshot: Id,
    item: Item,
    list_pos: usize,
    ids: Vec<Id>,
    id_pos: usize,
    produced: u64,
    chunks: u64,
}

impl<S: Storage> ItemReader<S> {
    /// The item being read.
    pub fn item(&self) -> &Item {
        &self.item
    }

    fn whose(&self) -> String {
        format!("item {:?} of snapshot {}", self.item.name, self.snapshot)
    }

    fn load_next_list(&mut self) -> Result<bool> {
        let Some(list_id) = self.item.chunk_lists.get(self.list_pos).copied() else {
            return Ok(false);
        };
        let whose = self.whose();
        let raw = self
            .repo
            .read_blobs(&[list_id], &|_| whose.clone())?
            .pop()
            .expect("one blob asked, one returned");
        let ids = decode_chunk_list(&raw).map_err(|why| {
            Error::corruption(format!("chunk list {list_id} of {}", self.whose()), why)
        })?;
        // State advances only after a successful read, so a failed call can be retried.
        self.list_pos += 1;
        self.ids = ids;
        self.id_pos = 0;
        Ok(true)
    }

    /// The next chunks of content in order (about 8 MiB), or `None` at the end.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the chunk, pack and snapshot for damaged or missing data;
    /// [`Error::Storage`] (`Archived` for a pack in an archive class).
    pub fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
        while self.id_pos >= self.ids.len() {
            if !self.load_next_list()? {
                if self.produced != self.item.size || self.chunks != self.item.chunk_count {
                    return Err(Error::corruption(
                        self.whose(),
                        format!(
                            "restored {} bytes in {} chunks, manifest says {} bytes in {} chunks",
                            self.produced, self.chunks, self.item.size, self.item.chunk_count
                        ),
                    ));
                }
                return Ok(None);
            }
        }
        let mut take = Vec::new();
        let mut bytes = 0u64;
        {
            let guard = self.repo.index()?;
            let index = guard.as_ref().expect("index loaded");
            let mut pos = self.id_pos;
            while pos < self.ids.len() && bytes < RESTORE_BATCH_BYTES {
                let id = self.ids[pos];
                bytes += index.get(&id).map_or(0, |l| l.entry.raw_len as u64);
                take.push(id);
                pos += 1;
            }
        }
        let whose = self.whose();
        let out = self.repo.read_blobs(&take, &|_| whose.clone())?;
        self.id_pos += take.len();
        self.chunks += out.len() as u64;
        self.produced += out.iter().map(|c| c.len() as u64).sum::<u64>();
        if self.produced > self.item.size {
            return Err(Error::corruption(
                self.whose(),
                "more content than the manifest's size",
            ));
        }
        Ok(Some(out))
    }
}
