//! containerarchive-core: the no-I/O engine of containerarchive.
//!
//! It turns byte streams into pack, index and snapshot records over an abstract [`Storage`],
//! and back. It reads no file, socket, clock, environment or OS randomness: the caller passes
//! storage, time and randomness in. The modules follow the data flow: [`chunk`] → [`id`] /
//! [`crypto`] → [`compress`] → [`pack`] → [`index`] → [`snapshot`], driven by [`repo`].
//! The on-disk format is specified in `docs/FORMAT.md`.

#![warn(missing_docs)]

pub mod blob;
pub mod chunk;
pub mod compress;
pub mod config;
pub mod crypto;
pub mod delta;
pub mod error;
pub mod fuzzing;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod layout;
pub mod lock;
pub mod notice;
pub mod ops;
pub mod pack;
pub mod parallel;
pub mod parity;
pub mod progress;
pub mod repo;
pub mod retention;
pub mod scan;
pub mod snapshot;
pub mod storage;
pub mod upkeep;
pub mod validate;

pub use compress::Compression;
pub use config::Config;
pub use crypto::{KdfParams, RandomSource};
pub use error::{Error, Result};
pub use id::Id;
pub use lock::LockInfo;
pub use ops::ingest::Ingest;
pub use ops::restore::ItemReader;
pub use repo::{
    InitOptions, Repository, SnapshotFilter, SnapshotScan, UnreadableSnapshot,
    UnreadableSnapshotView,
};
pub use snapshot::{Item, Snapshot};
pub use storage::{MemoryStorage, Storage, StorageError};
