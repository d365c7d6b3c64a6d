//! `reindex`: rebuild the global index from the packs (`containerarchive reindex`).

pub use crate::upkeep::ReindexReport;

use crate::crypto::RandomSource;
use crate::error::Result;
use crate::lock::{LockInfo, StaleCheck};
use crate::repo::Repository;
use crate::storage::Storage;

impl<S: Storage> Repository<S> {
    /// Rebuild the global index from the `.idx` files, and from the packs' own headers where
    /// an `.idx` is missing or damaged (rewriting that `.idx`). Takes an exclusive lock.
    ///
    /// # Errors
    /// [`Error::Locked`](crate::Error::Locked); [`Error::Storage`](crate::Error::Storage).
    pub fn reindex(
        &self,
        info: &LockInfo,
        rng: &mut dyn RandomSource,
        is_stale: StaleCheck<'_>,
    ) -> Result<ReindexReport> {
        self.with_exclusive(info, rng, is_stale, |rng, _| self.rebuild_index(rng))
    }
}
