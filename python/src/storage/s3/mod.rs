//! S3-compatible object storage (AWS S3, MinIO, Ceph RGW…) through the `object_store` crate.
//!
//! A repository lives under `s3://bucket/prefix`. Credentials, region and endpoint come from
//! [`S3Settings`] (the Python layer resolves them as the AWS tools do: environment variables,
//! then the shared credentials and config files of `AWS_PROFILE`), then from the environment,
//! then from the container or instance metadata services.
//!
//! Writers on many hosts never overwrite each other's objects: every put is a conditional
//! create (`If-None-Match: *`), which S3 and the compatible stores answer with 412 when the key
//! exists. A write whose reply was lost is retried, and the retry of an applied create gets
//! 412: every create then reads the object back and counts identical bytes as its own success
//! (every object this engine writes is content-addressed or holds random bytes, so identical
//! bytes are never another writer's). Packs and their `.idx` are uploaded in the background,
//! several at once; as with the filesystem storage, every other operation first waits for those
//! uploads and reports their first error, so an index file or snapshot is never written before
//! the packs it names are stored. Reads of packs are ranged GETs, those of one restore batch
//! issued concurrently. S3 is strongly consistent for reads after writes and for listings,
//! which the lock protocol relies on.
//!
//! **Retries.** Throttling (503 SlowDown, 429), server errors (5xx), timeouts and dropped
//! connections are retried with exponential backoff (0.2 s doubling to 15 s) for a time budget
//! (`S3Settings::retry_seconds`, default 3 minutes), each request signed afresh at least every
//! 10 minutes. While the store keeps failing a line on stderr says so every 10 s. An endpoint
//! that has never answered in this process (a wrong URL or port, http against https) is given
//! up after 10 s with the cause named; errors that retrying cannot fix (403, 404, 412) are
//! reported at once.
//!
//! **Fork.** The client's threads (a tokio runtime) belong to the process that made them: in a
//! forked child the first use builds a new client, and uploads the parent had in flight are
//! the parent's to finish.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::s3::explain::{chain_text, xml_field};
use crate::storage::s3::requests::{create_async, put_exact_async, range_async};
use crate::storage::s3::watch::{root_cause, Health, WatchConnector, GAVE_UP};
use crate::storage::write_behind::WriteBehind;
use containerarchive_core::storage::{may_write_in_background, waits_for_background};
use containerarchive_core::{Storage, StorageError};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::Deserialize;
use tokio::runtime::Runtime;

/// Uploads in flight at once (each holds one pack in memory).
mod explain;
mod requests;
mod watch;

const PARALLEL_UPLOADS: usize = 4;
/// Ranged reads in flight at once (the parts of the reads of one restore batch).
const PARALLEL_READS: usize = 8;
/// Largest single ranged read: longer reads are split so that their parts run concurrently.
const READ_PART: u64 = 8 << 20;
/// Default time budget for retrying one operation.
pub const DEFAULT_RETRY_SECONDS: f64 = 180.0;
/// Longest the client retries one signed request: SigV4 signatures expire after 15 minutes,
/// so a longer budget re-issues the request (signed again) after this.
const SIGNED_RETRY_LIMIT: Duration = Duration::from_secs(600);
/// An endpoint that never answered is given up after this long (a configuration mistake).
const FIRST_CONTACT_LIMIT: Duration = Duration::from_secs(10);
/// A run of failures is reported once it lasts this long, then every `NOTICE_EVERY`.
const NOTICE_AFTER: Duration = Duration::from_secs(2);
const NOTICE_EVERY: Duration = Duration::from_secs(10);
/// Hosts of the container and instance metadata services (credentials).
const METADATA_HOSTS: [&str; 3] = ["169.254.169.254", "169.254.170.2", "[fd00:ec2::254]"];

/// Whether storage waits are reported on stderr (on unless the embedding program turns it off).
pub static REPORT_WAITS: AtomicBool = AtomicBool::new(true);

/// How to reach the store, resolved by the caller (the Python layer reads the environment and
/// the AWS shared files); anything unset falls back to `object_store`'s reading of the
/// environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Seconds to keep retrying throttling and transient failures (default 180).
    pub retry_seconds: Option<f64>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Where credentials were looked for, for the message when none were found.
    pub credential_sources: Option<String>,
}

/// A repository in an S3 bucket, under a prefix.
pub struct S3Storage {
    settings: S3Settings,
    bucket: String,
    region: String,
    endpoint: Option<String>,
    prefix: String,
    url: String,
    budget: Duration,
    health: Arc<Health>,
    /// Built on first use in each process (`None` until then).
    client: Mutex<Option<Arc<Client>>>,
    /// Background uploads of pack data (see [`WriteBehind`]).
    uploads: Arc<WriteBehind>,
}

/// The HTTP client and the threads it runs on, owned by one process.
struct Client {
    pid: u32,
    store: Arc<AmazonS3>,
    runtime: Runtime,
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

impl S3Storage {
    /// Storage at `url` (`s3://bucket` or `s3://bucket/prefix`), configured by `settings` and
    /// then the environment.
    pub fn from_url(url: &str, settings: S3Settings) -> Result<Self, StorageError> {
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
        let region = settings
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|e| !e.is_empty());
        if let Some(endpoint) = &endpoint {
            check_endpoint(url, endpoint, bucket)?;
        }
        let budget = Duration::from_secs_f64(
            settings
                .retry_seconds
                .unwrap_or(DEFAULT_RETRY_SECONDS)
                .clamp(0.0, 7.0 * 86_400.0),
        );
        let url = url.trim_end_matches('/').to_string();
        let storage = S3Storage {
            bucket: bucket.to_string(),
            region,
            endpoint,
            prefix,
            budget,
            health: Arc::new(Health {
                location: url.clone(),
                budget,
                reached: AtomicBool::new(false),
                trouble: Mutex::new(None),
            }),
            url,
            settings,
            client: Mutex::new(None),
            uploads: Arc::default(),
        };
        // Build the real client now, so that a configuration error shows at open.
        storage.client()?;
        Ok(storage)
    }

    /// This process's client, built on first use in each process (a forked child gets its own).
    fn client(&self) -> Result<Arc<Client>, StorageError> {
        let pid = std::process::id();
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref().filter(|c| c.pid == pid) {
            return Ok(client.clone());
        }
        let built = Arc::new(self.build_client(pid)?);
        if let Some(parents) = slot.replace(built.clone()) {
            // The parent's runtime threads do not exist here: dropping it would wait for them.
            std::mem::forget(parents);
        }
        Ok(built)
    }

    fn build_client(&self, pid: u32) -> Result<Client, StorageError> {
        let s = &self.settings;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_http_connector(WatchConnector {
                health: self.health.clone(),
            })
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(15),
                    base: 2.0,
                },
                max_retries: usize::MAX,
                retry_timeout: self.budget.min(SIGNED_RETRY_LIMIT),
            });
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = &s.session_token {
                builder = builder.with_token(token);
            }
        }
        let store = builder
            .build()
            .map_err(|e| config_error(&self.url, format!("S3 configuration: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ca-s3")
            .enable_all()
            .build()
            .map_err(|e| config_error(&self.url, format!("cannot start the S3 client: {e}")))?;
        Ok(Client {
            pid,
            store: Arc::new(store),
            runtime,
        })
    }

    /// Run `op` against the store, re-issuing it (signed again) while failures are transient
    /// and the budget lasts.
    fn run<T, F, Fut>(&self, key: &str, op: F) -> Result<T, StorageError>
    where
        F: Fn(Arc<AmazonS3>) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let start = Instant::now();
        loop {
            let client = self.client()?;
            match client.runtime.block_on(op(client.store.clone())) {
                Err(StorageError::Backend { ref message, .. })
                    if !message.contains(GAVE_UP)
                        && self.health.troubled()
                        && self.health.reached.load(Ordering::Acquire)
                        && start.elapsed() + Duration::from_secs(1) < self.budget => {}
                Err(e) => return Err(self.explained(key, e)),
                ok => return ok,
            }
        }
    }

    /// Whether the bucket exists (a listing of it succeeds; 404 means it does not).
    pub fn bucket_exists(&self) -> Result<bool, StorageError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let result = self.run(&self.url, |store| {
            let prefix = prefix.clone();
            async move {
                match store.list_with_delimiter(prefix.as_ref()).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) if e.to_string().contains("NoSuchBucket") => Ok(false),
                    Err(e) => Err(raw(&self.url, e)),
                }
            }
        });
        result
    }

    /// Create the bucket when it does not exist (as `restic init` does); whether it was created.
    /// Throttling and transient failures are retried as for every other request.
    pub fn create_bucket_if_missing(&self) -> Result<bool, StorageError> {
        if self.bucket_exists()? {
            return Ok(false);
        }
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        let start = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let client = self.client()?;
            let attempt = client.runtime.block_on(async {
                // CreateBucket is `PUT /<bucket>/`: object_store signs the URL (afresh for each
                // attempt), reqwest sends it.
                let url = client
                    .store
                    .signed_url(
                        http::Method::PUT,
                        &ObjectPath::from(""),
                        Duration::from_secs(300),
                    )
                    .await
                    .map_err(|e| (false, chain_text(&e)))?;
                let response = reqwest::Client::new()
                    .put(url)
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| (true, root_cause(&e)))?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if status.is_success() || text.contains("BucketAlreadyOwnedByYou") {
                    Ok(true)
                } else {
                    let transient =
                        status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS;
                    Err((
                        transient,
                        format!(
                            "HTTP {} {}",
                            status.as_u16(),
                            xml_field(&text, "Code").unwrap_or(text)
                        ),
                    ))
                }
            });
            match attempt {
                Ok(created) => {
                    self.health.answered();
                    return Ok(created);
                }
                Err((true, cause)) if start.elapsed() + pause < self.budget => {
                    self.health.failed(&cause);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(15));
                }
                Err((_, cause)) => {
                    return Err(match self.explain_text(&self.url, &cause) {
                        StorageError::Backend { key, message } => StorageError::Backend {
                            key,
                            message: format!("cannot create bucket {}: {message}", self.bucket),
                        },
                        other => other,
                    })
                }
            }
        }
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
        self.uploads
            .settle()
            .map_err(|e| self.explained("upload", e))
    }

    fn upload_in_background(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let client = self.client()?;
        // Bound memory and connections: wait for a slot when enough are in flight.
        let ticket = self
            .uploads
            .begin(PARALLEL_UPLOADS)
            .map_err(|e| self.explained(key, e))?;
        let store = client.store.clone();
        let key = key.to_string();
        let upload = client
            .runtime
            .spawn(async move { put_exact_async(&store, &key, &path, data).await });
        // The barrier hears of every end, a panicked upload included.
        let uploads = self.uploads.clone();
        client.runtime.spawn(async move {
            let result = upload.await.unwrap_or_else(|e| {
                Err(StorageError::Backend {
                    key: "upload".into(),
                    message: format!("upload task failed: {e}"),
                })
            });
            uploads.finish(ticket, result);
        });
        Ok(())
    }

    fn create(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let data = bytes::Bytes::from(data);
        self.run(key, |store| {
            let (path, data) = (path.clone(), data.clone());
            async move { create_async(&store, key, &path, data).await }
        })
    }
}

/// An `object_store` error as a storage error, not yet explained (see `S3Storage::explained`).
fn raw(key: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_string()),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StorageError::AlreadyExists(key.to_string())
        }
        other => StorageError::Backend {
            key: key.to_string(),
            message: chain_text(&other),
        },
    }
}

/// Refuse an endpoint that cannot work with this location, saying why.
fn check_endpoint(url: &str, endpoint: &str, bucket: &str) -> Result<(), StorageError> {
    let parsed: http::Uri = endpoint.parse().map_err(|e| {
        config_error(
            url,
            format!("the endpoint URL {endpoint:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err(config_error(
            url,
            format!("the endpoint URL {endpoint:?} must start with http:// or https://"),
        ));
    }
    let first = parsed
        .path()
        .trim_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if first == bucket {
        return Err(config_error(
            url,
            format!(
                "the endpoint URL {endpoint} ends with the bucket name: give the server only \
                 (for example {}://{}), the bucket is in the s3:// location",
                parsed.scheme_str().unwrap_or("https"),
                parsed
                    .authority()
                    .map(|a| a.as_str())
                    .unwrap_or("host:port")
            ),
        ));
    }
    Ok(())
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
        self.run(key, |store| {
            let path = path.clone();
            async move {
                let result = store.get(&path).await.map_err(|e| raw(key, e))?;
                let bytes = result.bytes().await.map_err(|e| raw(key, e))?;
                Ok(bytes.to_vec())
            }
        })
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        self.settle()?;
        let path = self.path(key)?;
        self.run(key, |store| {
            let path = path.clone();
            async move { range_async(&store, key, &path, offset, length).await }
        })
    }

    fn get_ranges(&self, requests: &[(String, u64, u64)]) -> Vec<Result<Vec<u8>, StorageError>> {
        let client = match self.settle().and_then(|()| self.client()) {
            Ok(client) => client,
            Err(e) => return requests.iter().map(|_| Err(e.clone())).collect(),
        };
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
            let store = &client.store;
            let key = requests[i].0.as_str();
            async move {
                let path = self.path(key)?;
                range_async(store, key, &path, offset, length).await
            }
        });
        let fetched: Vec<Result<Vec<u8>, StorageError>> = client.runtime.block_on(
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
                (slot @ Ok(_), Err(e)) => *slot = Err(self.explained(&requests[i].0, e)),
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
        let data = bytes::Bytes::from(data);
        self.run(key, |store| {
            let (path, data) = (path.clone(), data.to_vec());
            async move { put_exact_async(&store, key, &path, data).await }
        })
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
        let data = bytes::Bytes::copy_from_slice(data);
        // A plain PUT replaces the object atomically (readers see the old or the new one);
        // repeating it after a lost reply changes nothing.
        self.run(key, |store| {
            let (path, data) = (path.clone(), data.clone());
            async move {
                store
                    .put(&path, PutPayload::from(data))
                    .await
                    .map(|_| ())
                    .map_err(|e| raw(key, e))
            }
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
        let metas: Vec<object_store::ObjectMeta> = self.run(prefix, |store| {
            let list_path = list_path.clone();
            async move {
                store
                    .list(list_path.as_ref())
                    .try_collect()
                    .await
                    .map_err(|e| raw(prefix, e))
            }
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
        // S3 deletes are idempotent (a repeated DELETE after a lost reply answers 204); the
        // trait reports a missing object, so look first, once.
        self.run(key, |store| {
            let path = path.clone();
            async move { store.head(&path).await.map(|_| ()).map_err(|e| raw(key, e)) }
        })?;
        self.run(key, |store| {
            let path = path.clone();
            async move { store.delete(&path).await.map_err(|e| raw(key, e)) }
        })
    }
}
