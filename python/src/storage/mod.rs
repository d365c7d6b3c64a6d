//! The storage a repository location names: a directory, or `s3://bucket/prefix`.

use std::path::Path;

use containerarchive_core::{Storage, StorageError};

pub mod fs;
pub mod s3;
pub mod write_behind;

use fs::FsStorage;
use s3::{S3Settings, S3Storage};

/// Filesystem or S3 storage behind one type, so that one repository type serves both.
#[derive(Debug)]
pub enum AnyStorage {
    /// A local or mounted directory.
    Fs(FsStorage),
    /// An S3-compatible bucket.
    S3(Box<S3Storage>),
}

impl AnyStorage {
    /// Whether `location` names object storage rather than a directory.
    pub fn is_url(location: &Path) -> bool {
        location.to_str().is_some_and(|s| s.starts_with("s3://"))
    }

    /// The storage at `location`; `settings` apply to object storage.
    pub fn at(location: &Path, settings: &S3Settings) -> Result<Self, StorageError> {
        match location.to_str() {
            Some(url) if Self::is_url(location) => Ok(AnyStorage::S3(Box::new(
                S3Storage::from_url(url, settings.clone())?,
            ))),
            _ => Ok(AnyStorage::Fs(FsStorage::new(location))),
        }
    }

    /// Before creating a repository: object storage gets its bucket if it has none yet.
    pub fn prepare_for_init(&self) -> Result<(), StorageError> {
        match self {
            AnyStorage::Fs(_) => Ok(()),
            AnyStorage::S3(s) => s.create_bucket_if_missing().map(|_| ()),
        }
    }

    /// Why a repository is not found here, when the storage can tell more than "no config".
    pub fn missing_reason(&self) -> Option<String> {
        match self {
            AnyStorage::S3(s) => match s.bucket_exists() {
                Ok(false) => Some(format!("the bucket of {} does not exist", s.location())),
                _ => None,
            },
            AnyStorage::Fs(_) => None,
        }
    }

    fn inner(&self) -> &dyn Storage {
        match self {
            AnyStorage::Fs(s) => s,
            AnyStorage::S3(s) => s.as_ref(),
        }
    }
}

impl Storage for AnyStorage {
    fn location(&self) -> String {
        self.inner().location()
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.inner().get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        self.inner().get_range(key, offset, length)
    }
    fn get_ranges(&self, requests: &[(String, u64, u64)]) -> Vec<Result<Vec<u8>, StorageError>> {
        self.inner().get_ranges(requests)
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        self.inner().put(key, data)
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        self.inner().list(prefix)
    }
    fn list_with_times(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, u64, Option<i64>)>, StorageError> {
        self.inner().list_with_times(prefix)
    }
    fn replace(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        self.inner().replace(key, data)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner().delete(key)
    }
    fn put_exact_owned(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        self.inner().put_exact_owned(key, data)
    }
    fn remove_partial_writes(&self, written_before_ms: Option<i64>) -> Result<u64, StorageError> {
        self.inner().remove_partial_writes(written_before_ms)
    }
}
