//! S3-compatible object storage (AWS S3, MinIO, Ceph RGW…) through the `object_store` crate.
//!
//! A repository lives under `s3://bucket/prefix`. Credentials, region and endpoint come from
//! the standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`; an `http://`
//! endpoint is allowed without TLS).
//!
//! Writers on many hosts never overwrite each other's objects: every put is a conditional
//! create (`If-None-Match: *`), which S3 and the compatible stores answer with 412 when the key
//! exists. Packs and their `.idx` are uploaded in the background, several at once; as with
//! the filesystem storage, every other operation first waits for those uploads and reports
//! their first error, so an index file or snapshot is never written before the packs it names
//! are stored. Reads of packs are ranged GETs, those of one restore batch issued concurrently. S3 is strongly consistent for reads after
//! writes and for listings, which the lock protocol relies on.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use containerarchive_core::storage::{may_write_in_background, waits_for_background};
use containerarchive_core::{Storage, StorageError};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Uploads in flight at once (each holds one pack in memory).
const PARALLEL_UPLOADS: usize = 4;
/// Ranged reads in flight at once (the parts of the reads of one restore batch).
const PARALLEL_READS: usize = 8;
/// Largest single ranged read: longer reads are split so that their parts run concurrently.
const READ_PART: u64 = 8 << 20;

/// A repository in an S3 bucket, under a prefix.
pub struct S3Storage {
    store: Arc<AmazonS3>,
    bucket: String,
    region: String,
    prefix: String,
    url: String,
    runtime: Runtime,
    uploads: Mutex<VecDeque<JoinHandle<Result<(), StorageError>>>>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage").field("url", &self.url).finish()
    }
}

fn config_error(url: &str, message: impl std::fmt::Display) -> StorageError {
    StorageError::Backend {
        key: url.to_string(),
        message: message.to_string(),
    }
}

fn map_error(key: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_string()),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StorageError::AlreadyExists(key.to_string())
        }
        other => StorageError::Backend {
            key: key.to_string(),
            message: other.to_string(),
        },
    }
}

impl S3Storage {
    /// Storage at `url` (`s3://bucket` or `s3://bucket/prefix`), configured from the environment.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| config_error(url, "an S3 location starts with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        if bucket.is_empty() {
            return Err(config_error(url, "no bucket name in the S3 location"));
        }
        if !prefix.is_empty() {
            ObjectPath::parse(&prefix)
                .map_err(|e| config_error(url, format!("invalid prefix {prefix:?}: {e}")))?;
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        builder = builder.with_region(region.clone());
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|e| config_error(url, format!("S3 configuration: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ca-s3")
            .enable_all()
            .build()
            .map_err(|e| config_error(url, format!("cannot start the S3 client: {e}")))?;
        Ok(S3Storage {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            region,
            prefix,
            url: url.trim_end_matches('/').to_string(),
            runtime,
            uploads: Mutex::new(VecDeque::new()),
        })
    }

    /// Whether the bucket exists (a listing of it succeeds; 404 means it does not).
    pub fn bucket_exists(&self) -> Result<bool, StorageError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        match self
            .runtime
            .block_on(self.store.list_with_delimiter(prefix.as_ref()))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) if e.to_string().contains("NoSuchBucket") => Ok(false),
            Err(e) => Err(map_error(&self.url, e)),
        }
    }

    /// Create the bucket when it does not exist (as `restic init` does); whether it was created.
    pub fn create_bucket_if_missing(&self) -> Result<bool, StorageError> {
        if self.bucket_exists()? {
            return Ok(false);
        }
        let fail = |m: String| {
            config_error(
                &self.url,
                format!("cannot create bucket {}: {m}", self.bucket),
            )
        };
        self.runtime.block_on(async {
            // CreateBucket is `PUT /<bucket>/`: object_store signs the URL, reqwest sends it.
            let url = self
                .store
                .signed_url(
                    http::Method::PUT,
                    &ObjectPath::from(""),
                    std::time::Duration::from_secs(300),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            let body = if self.region == "us-east-1" {
                String::new()
            } else {
                format!(
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                    self.region
                )
            };
            let response = reqwest::Client::new()
                .put(url)
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(body)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() || text.contains("BucketAlreadyOwnedByYou") {
                Ok(true)
            } else {
                Err(fail(format!("HTTP {status}: {text}")))
            }
        })
    }

    fn path(&self, key: &str) -> Result<ObjectPath, StorageError> {
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(config_error(key, "invalid storage key"));
        }
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjectPath::parse(full).map_err(|e| config_error(key, e))
    }

    /// The repository key of a listed object (its path without the prefix).
    fn key_of(&self, path: &ObjectPath) -> Option<String> {
        let p = path.as_ref();
        if self.prefix.is_empty() {
            Some(p.to_string())
        } else {
            p.strip_prefix(&self.prefix)?
                .strip_prefix('/')
                .map(str::to_string)
        }
    }

    /// Wait for every background upload; the first error of any of them.
    fn settle(&self) -> Result<(), StorageError> {
        let pending: Vec<_> = self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let mut first = Ok(());
        for handle in pending {
            let result = self.runtime.block_on(handle).unwrap_or_else(|e| {
                Err(StorageError::Backend {
                    key: "upload".into(),
                    message: format!("upload task failed: {e}"),
                })
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    fn upload_in_background(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        // Bound memory and connections: wait for the oldest upload when enough are in flight.
        while uploads.len() >= PARALLEL_UPLOADS {
            let oldest = uploads.pop_front().expect("non-empty");
            self.runtime.block_on(oldest).unwrap_or_else(|e| {
                Err(StorageError::Backend {
                    key: key.into(),
                    message: format!("upload task failed: {e}"),
                })
            })?;
        }
        let store = self.store.clone();
        let key = key.to_string();
        uploads.push_back(
            self.runtime
                .spawn(async move { put_exact_async(&store, &key, &path, data).await }),
        );
        Ok(())
    }

    fn create(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.runtime
            .block_on(create_async(&self.store, key, &path, data))
    }
}

async fn create_async(
    store: &AmazonS3,
    key: &str,
    path: &ObjectPath,
    data: Vec<u8>,
) -> Result<(), StorageError> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(path, PutPayload::from(data), options)
        .await
        .map(|_| ())
        .map_err(|e| map_error(key, e))
}

/// A conditional create; if the key exists with other (damaged) bytes they are replaced,
/// identical bytes are left alone (the content-addressed objects written in the background).
async fn put_exact_async(
    store: &AmazonS3,
    key: &str,
    path: &ObjectPath,
    data: Vec<u8>,
) -> Result<(), StorageError> {
    let data = bytes::Bytes::from(data);
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store
        .put_opts(path, PutPayload::from(data.clone()), options)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match map_error(key, e) {
            StorageError::AlreadyExists(_) => {
                let existing = store
                    .get(path)
                    .await
                    .map_err(|e| map_error(key, e))?
                    .bytes()
                    .await
                    .map_err(|e| map_error(key, e))?;
                if existing != data {
                    store
                        .put(path, PutPayload::from(data))
                        .await
                        .map_err(|e| map_error(key, e))?;
                }
                Ok(())
            }
            other => Err(other),
        },
    }
}

/// One ranged GET; a range past the end is clamped to the object's size (a HEAD only then), as
/// the trait allows a short read.
async fn range_async(
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
            let size = store.head(path).await.map_err(|e| map_error(key, e))?.size;
            let end = offset.saturating_add(length).min(size);
            if offset >= end {
                return Ok(Vec::new());
            }
            if end == offset.saturating_add(length) {
                return Err(map_error(key, first));
            }
            let bytes = store
                .get_range(path, offset..end)
                .await
                .map_err(|e| map_error(key, e))?;
            Ok(bytes.to_vec())
        }
    }
}

impl Drop for S3Storage {
    fn drop(&mut self) {
        // Finish what was handed over (its outcome was either reported already or the engine
        // never asked): an upload abandoned halfway would only leave garbage for prune.
        let _ = self.settle();
    }
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.settle()?;
        let path = self.path(key)?;
        self.runtime.block_on(async {
            let result = self.store.get(&path).await.map_err(|e| map_error(key, e))?;
            let bytes = result.bytes().await.map_err(|e| map_error(key, e))?;
            Ok(bytes.to_vec())
        })
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        self.settle()?;
        let path = self.path(key)?;
        self.runtime
            .block_on(range_async(&self.store, key, &path, offset, length))
    }

    fn get_ranges(&self, requests: &[(String, u64, u64)]) -> Vec<Result<Vec<u8>, StorageError>> {
        if let Err(e) = self.settle() {
            return requests.iter().map(|_| Err(e.clone())).collect();
        }
        // Each read in parts of at most READ_PART bytes, every part of every read in flight at
        // once (up to PARALLEL_READS): one pack's 8 MiB come back as fast as several packs'.
        let parts: Vec<(usize, u64, u64)> = requests
            .iter()
            .enumerate()
            .flat_map(|(i, (_, offset, length))| {
                let end = offset.saturating_add(*length);
                (*offset..end)
                    .step_by(READ_PART as usize)
                    .map(move |start| (i, start, (end - start).min(READ_PART)))
            })
            .collect();
        let reads = parts.iter().map(|&(i, offset, length)| {
            let store = &self.store;
            let key = requests[i].0.as_str();
            async move {
                let path = self.path(key)?;
                range_async(store, key, &path, offset, length).await
            }
        });
        let fetched: Vec<Result<Vec<u8>, StorageError>> = self.runtime.block_on(
            futures::stream::iter(reads)
                .buffered(PARALLEL_READS)
                .collect(),
        );
        let mut out: Vec<Result<Vec<u8>, StorageError>> = requests
            .iter()
            .map(|(_, _, length)| Ok(Vec::with_capacity(*length as usize)))
            .collect();
        for (&(i, _, _), part) in parts.iter().zip(fetched) {
            match (&mut out[i], part) {
                (Ok(buf), Ok(bytes)) => buf.extend_from_slice(&bytes),
                (slot @ Ok(_), Err(e)) => *slot = Err(e),
                (Err(_), _) => {}
            }
        }
        out
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        if may_write_in_background(key) {
            return self.upload_in_background(key, data.to_vec());
        }
        if waits_for_background(key) {
            self.settle()?;
        }
        self.create(key, data.to_vec())
    }

    fn put_exact_owned(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        if may_write_in_background(key) {
            return self.upload_in_background(key, data);
        }
        self.settle()?;
        let path = self.path(key)?;
        self.runtime
            .block_on(put_exact_async(&self.store, key, &path, data))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self
            .list_with_times(prefix)?
            .into_iter()
            .map(|(k, s, _)| (k, s))
            .collect())
    }

    fn replace(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        self.settle()?;
        let path = self.path(key)?;
        // A plain PUT replaces the object atomically (readers see the old or the new one).
        self.runtime.block_on(async {
            self.store
                .put(&path, PutPayload::from(data.to_vec()))
                .await
                .map(|_| ())
                .map_err(|e| map_error(key, e))
        })
    }

    fn list_with_times(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, u64, Option<i64>)>, StorageError> {
        self.settle()?;
        // List the directory the prefix is in, then keep what starts with the prefix.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let list_path = match (dir.is_empty(), self.prefix.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ObjectPath::from(self.prefix.as_str())),
            (false, _) => Some(self.path(dir)?),
        };
        let metas: Vec<object_store::ObjectMeta> = self.runtime.block_on(async {
            self.store
                .list(list_path.as_ref())
                .try_collect()
                .await
                .map_err(|e| map_error(prefix, e))
        })?;
        // Last-Modified is the store's clock (the time it received the upload).
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                Some((
                    self.key_of(&m.location)?,
                    m.size,
                    Some(m.last_modified.timestamp_millis()),
                ))
            })
            .filter(|(k, _, _)| k.starts_with(prefix))
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        if waits_for_background(key) {
            self.settle()?;
        }
        let path = self.path(key)?;
        self.runtime.block_on(async {
            // S3 deletes are idempotent; the trait reports a missing object, so look first.
            self.store
                .head(&path)
                .await
                .map_err(|e| map_error(key, e))?;
            self.store
                .delete(&path)
                .await
                .map_err(|e| map_error(key, e))
        })
    }
}
