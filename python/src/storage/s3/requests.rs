//! The requests that need more than one call: a create that tells a lost reply from a conflict
//! (412 → read back and compare), an exact put, and a ranged read split into parts.

use std::ops::Range;

use crate::storage::s3::raw;
use containerarchive_core::StorageError;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// A conditional create. When the store answers that the key exists, the object is read back:
/// identical bytes are this very write, applied by an attempt whose reply was lost (success);
/// anything else is another writer's object (`AlreadyExists`).
pub(crate) async fn create_async(
    store: &AmazonS3,
    key: &str,
    path: &ObjectPath,
    data: bytes::Bytes,
) -> Result<(), StorageError> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store
        .put_opts(path, PutPayload::from(data.clone()), options)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match raw(key, e) {
            StorageError::AlreadyExists(_) => {
                let existing = store
                    .get(path)
                    .await
                    .map_err(|e| raw(key, e))?
                    .bytes()
                    .await
                    .map_err(|e| raw(key, e))?;
                if existing == data {
                    Ok(())
                } else {
                    Err(StorageError::AlreadyExists(key.to_string()))
                }
            }
            other => Err(other),
        },
    }
}

/// A conditional create; if the key exists with other (damaged) bytes they are replaced,
/// identical bytes are left alone (the content-addressed objects written in the background).
pub(crate) async fn put_exact_async(
    store: &AmazonS3,
    key: &str,
    path: &ObjectPath,
    data: Vec<u8>,
) -> Result<(), StorageError> {
    let data = bytes::Bytes::from(data);
    match create_async(store, key, path, data.clone()).await {
        Err(StorageError::AlreadyExists(_)) => store
            .put(path, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| raw(key, e)),
        other => other,
    }
}

/// One ranged GET; a range past the end is clamped to the object's size (a HEAD only then), as
/// the trait allows a short read.
pub(crate) async fn range_async(
    store: &AmazonS3,
    key: &str,
    path: &ObjectPath,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, StorageError> {
    let range: Range<u64> = offset..offset.saturating_add(length);
    match store.get_range(path, range).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(key.to_string())),
        Err(first) => {
            let size = store.head(path).await.map_err(|e| raw(key, e))?.size;
            let end = offset.saturating_add(length).min(size);
            if offset >= end {
                return Ok(Vec::new());
            }
            if end == offset.saturating_add(length) {
                return Err(raw(key, first));
            }
            let bytes = store
                .get_range(path, offset..end)
                .await
                .map_err(|e| raw(key, e))?;
            Ok(bytes.to_vec())
        }
    }
}
