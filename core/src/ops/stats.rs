//! Repository totals: what is stored, how much deduplication and compression save.

use serde::Serialize;

use crate::error::Result;
use crate::pack::BlobKind;
use crate::repo::{Repository, SnapshotFilter, UnreadableSnapshotView};
use crate::storage::Storage;

/// Totals over a whole repository, from its index, its parity listing and its snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepoStats {
    /// Snapshots.
    pub snapshots: u64,
    /// Data packs in the index.
    pub packs: u64,
    /// Bytes of those packs (headers included).
    pub pack_bytes: u64,
    /// Parity shards and group descriptions, and their bytes.
    pub parity_files: u64,
    /// See [`RepoStats::parity_files`].
    pub parity_bytes: u64,
    /// Distinct content chunks.
    pub unique_chunks: u64,
    /// Their bytes before compression.
    pub unique_bytes: u64,
    /// Chunk-list blobs (the metadata that lists each item's chunks).
    pub chunk_lists: u64,
    /// Bytes of every blob as stored (compressed, encrypted).
    pub stored_bytes: u64,
    /// Content bytes over all snapshots, counted once per snapshot (what restoring every
    /// snapshot would produce).
    pub original_bytes: u64,
    /// `original_bytes / unique_bytes`: how many times over deduplication stores the data.
    /// `unique_bytes` counts every chunk in the index at its full size, those of forgotten
    /// snapshots not yet pruned and those kept only as bases of a kept snapshot's deltas
    /// included, so after a forget this can fall below 1 (see `reduction_ratio`).
    pub dedup_ratio: f64,
    /// `unique_bytes / stored bytes of data chunks`: what compression saves.
    pub compression_ratio: f64,
    /// `original_bytes` over the stored bytes of data chunks: deduplication, delta encoding and
    /// compression together, what the snapshots' content takes stored (parity aside).
    pub reduction_ratio: f64,
    /// Unique chunks stored as deltas against similar chunks (counted in `unique_chunks`).
    pub delta_chunks: u64,
    /// Their bytes before encoding (counted in `unique_bytes`).
    pub delta_original_bytes: u64,
    /// Their bytes as stored.
    pub delta_stored_bytes: u64,
    /// Snapshots whose manifest cannot be read (and why): not in `snapshots` nor in
    /// `original_bytes`, so the ratios leave them out (`verify` and `repair` deal with them).
    pub unreadable_snapshots: Vec<UnreadableSnapshotView>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

impl<S: Storage> Repository<S> {
    /// Repository totals. Reads the index, lists parity files and reads every snapshot manifest;
    /// no pack is read. A manifest that cannot be read is named in
    /// [`RepoStats::unreadable_snapshots`], not an error.
    ///
    /// # Errors
    /// [`Error::Corruption`](crate::Error::Corruption) for an index that cannot be read;
    /// [`Error::Storage`](crate::Error::Storage).
    pub fn stats(&self) -> Result<RepoStats> {
        let mut st = RepoStats::default();
        let mut data_stored = 0u64;
        {
            let guard = self.index()?;
            let index = guard.as_ref().expect("loaded by index()");
            st.packs = index.packs().len() as u64;
            st.pack_bytes = index.packs().iter().map(|(_, size)| size).sum();
            for e in index.entries() {
                st.stored_bytes += e.stored_len as u64;
                match e.kind {
                    BlobKind::Data => {
                        st.unique_chunks += 1;
                        st.unique_bytes += e.raw_len as u64;
                        data_stored += e.stored_len as u64;
                        if e.bases().is_some() {
                            st.delta_chunks += 1;
                            st.delta_original_bytes += e.raw_len as u64;
                            st.delta_stored_bytes += e.stored_len as u64;
                        }
                    }
                    BlobKind::ChunkList => st.chunk_lists += 1,
                }
            }
        }
        for (_, size) in crate::parity::list_parity(self.storage())? {
            st.parity_files += 1;
            st.parity_bytes += size;
        }
        // One unreadable manifest hides nothing else: the others are counted, it is named.
        let scan = self.scan_snapshots(&SnapshotFilter::default())?;
        for snap in &scan.snapshots {
            st.snapshots += 1;
            st.original_bytes += snap.manifest.original_size;
        }
        st.unreadable_snapshots = scan.unreadable.iter().map(|u| u.view()).collect();
        st.dedup_ratio = ratio(st.original_bytes, st.unique_bytes);
        st.compression_ratio = ratio(st.unique_bytes, data_stored);
        st.reduction_ratio = ratio(st.original_bytes, data_stored);
        Ok(st)
    }
}
