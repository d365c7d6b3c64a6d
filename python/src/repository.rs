//! `NativeRepository`: one method per core operation: convert the arguments, release the GIL,
//! call the core, convert the result. No policy of its own.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use containerarchive_core::lock::{LockPolicy, DEFAULT_STALE_AFTER_MS};
use containerarchive_core::ops::prune::{PruneOptions, PruneReport, Retention};
use containerarchive_core::ops::verify::{Finding, VerifyLevel, VerifyOptions};
use containerarchive_core::progress::Progress;
use containerarchive_core::retention::{parse_tag_set, GroupBy, Policy, Span};
use containerarchive_core::{
    Compression, Error, InitOptions, ItemReader, LockInfo, Repository, SnapshotFilter,
    UnreadableSnapshot,
};
use pyo3::prelude::*;

use crate::convert::{
    kdf_params, keep_first, s3_settings, snapshot_json, time_arg, ProgressCallback,
};
use crate::errors::{io_err, py_err};
use crate::ingest::NativeIngest;
use crate::locking;
use crate::locking::NativeLock;
use crate::os::{dup_fd, now_rfc3339, Interrupts, OsRng};
use crate::reader::{drain_reader, NativeReader};
use crate::storage::AnyStorage;

pub(crate) type Repo = Repository<AnyStorage>;

/// An open repository on the filesystem.
#[pyclass(module = "containerarchive._native", frozen)]
pub(crate) struct NativeRepository {
    pub(crate) repo: Repo,
    pub(crate) hostname: String,
    /// This process's identity in lock files (boot, pid namespace, start time), with the pid
    /// it was read in: a forked child reads its own.
    pub(crate) process: Mutex<(u32, String)>,
    /// Storage-clock age after which another holder's lock is stale (milliseconds).
    pub(crate) stale_after_ms: i64,
    /// Renews this handle's locks while it lives (a forked child starts its own).
    pub(crate) refresher: Mutex<locking::Refresher>,
    /// Signals that arrived during this handle's native work.
    pub(crate) interrupts: Arc<Interrupts>,
}

impl NativeRepository {
    /// The reader of one item of a snapshot (id, prefix or "latest").
    pub(crate) fn item_reader(
        &self,
        py: Python<'_>,
        snapshot_id: &str,
        item: &str,
    ) -> PyResult<ItemReader<AnyStorage>> {
        py.detach(|| {
            let snap = self.repo.get_snapshot(snapshot_id)?;
            self.repo.item_reader(&snap, item)
        })
        .map_err(py_err)
    }

    pub(crate) fn new(repo: Repo, hostname: String, stale_after_ms: Option<i64>) -> Self {
        let stale_after_ms = stale_after_ms.unwrap_or(DEFAULT_STALE_AFTER_MS).max(1);
        let refresher =
            locking::Refresher::start(repo.clone(), locking::refresh_interval(stale_after_ms));
        let interrupts = Arc::new(Interrupts::default());
        let polled = interrupts.clone();
        repo.set_interrupt(Some(Arc::new(move || polled.poll())));
        NativeRepository {
            repo,
            hostname,
            process: Mutex::new((std::process::id(), locking::process_identity())),
            stale_after_ms,
            refresher: Mutex::new(refresher),
            interrupts,
        }
    }

    /// Run `f` with this process's staleness policy: another holder's lock is stale when the
    /// storage has not seen it renewed for the stale age, or its process here is gone.
    /// Run prune or forget under `maintain`, forwarding progress to `progress` (an exception
    /// it raises is re-raised once the operation finished) and polling for signals.
    pub(crate) fn collecting(
        &self,
        py: Python<'_>,
        pid: u32,
        operation: &str,
        progress: Option<Py<PyAny>>,
        run: impl FnOnce(
                &Repo,
                &LockInfo,
                &LockPolicy<'_>,
                PruneOptions<'_>,
            ) -> Result<PruneReport, Error>
            + Send,
    ) -> PyResult<String> {
        let mut callback_error: Option<PyErr> = None;
        let report = self.maintain(py, pid, operation, |repo, info, stale| {
            let on_progress = &mut |p: &Progress<'_>| {
                if let Some(cb) = &progress {
                    let total = p.total_bytes.unwrap_or(0);
                    Python::attach(|py| {
                        if let Err(e) = cb.call1(py, (p.bytes, total, p.message)) {
                            callback_error.get_or_insert(e);
                        }
                    });
                }
                self.interrupts.poll()
            };
            run(
                repo,
                info,
                stale,
                PruneOptions::new().on_progress(on_progress),
            )
        })?;
        match callback_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// This process's lock identity; in a forked child, the child's (read once there), and a
    /// renewal thread of the child's own for the locks it takes.
    pub(crate) fn process(&self) -> String {
        let pid = std::process::id();
        let mut cached = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != pid {
            *cached = (pid, locking::process_identity());
            let mut refresher = self.refresher.lock().unwrap_or_else(|e| e.into_inner());
            *refresher = locking::Refresher::start(
                self.repo.clone(),
                locking::refresh_interval(self.stale_after_ms),
            );
        }
        cached.1.clone()
    }

    pub(crate) fn with_policy<T>(&self, f: impl FnOnce(&LockPolicy<'_>) -> T) -> T {
        let me = self.process();
        let gone = |l: &LockInfo| locking::holder_gone(&self.hostname, &me, l);
        f(&LockPolicy {
            stale_after_ms: self.stale_after_ms,
            holder_gone: &gone,
        })
    }

    /// Run a maintenance operation under this process's lock identity with the GIL released;
    /// its report as JSON.
    pub(crate) fn maintain<T: serde::Serialize + Send>(
        &self,
        py: Python<'_>,
        pid: u32,
        operation: &str,
        run: impl FnOnce(&Repo, &LockInfo, &LockPolicy<'_>) -> Result<T, Error> + Send,
    ) -> PyResult<String> {
        let info = self.lock_info(pid, operation);
        let report = py
            .detach(|| self.with_policy(|policy| run(&self.repo, &info, policy)))
            .map_err(py_err);
        let report = self.interrupts.outcome(report)?;
        Ok(serde_json::to_string(&report).expect("report serializes"))
    }

    /// Write a key file with the GIL released; its id.
    pub(crate) fn rekey(
        &self,
        py: Python<'_>,
        write: impl FnOnce(&Repo) -> Result<String, Error> + Send,
    ) -> PyResult<String> {
        py.detach(|| write(&self.repo)).map_err(py_err)
    }

    pub(crate) fn lock_info(&self, pid: u32, operation: &str) -> LockInfo {
        let now = now_rfc3339();
        LockInfo {
            hostname: self.hostname.clone(),
            pid,
            created_at: now.clone(),
            refreshed_at: now,
            exclusive: true,
            operation: operation.into(),
            process: self.process(),
        }
    }
}

#[pymethods]
impl NativeRepository {
    /// Create a repository at `path`.
    #[staticmethod]
    #[pyo3(signature = (path, passphrase, compression, level, kdf_memory_kib, kdf_iterations, created_at, comment, hostname, pack_size=None, stale_after_ms=None, storage_options=None, delta=None))]
    #[allow(clippy::too_many_arguments)]
    fn init(
        py: Python<'_>,
        path: PathBuf,
        passphrase: Option<Vec<u8>>,
        compression: &str,
        level: Option<i32>,
        kdf_memory_kib: Option<u32>,
        kdf_iterations: Option<u32>,
        created_at: String,
        comment: String,
        hostname: String,
        pack_size: Option<u64>,
        stale_after_ms: Option<i64>,
        storage_options: Option<String>,
        delta: Option<bool>,
    ) -> PyResult<Self> {
        let settings = s3_settings(storage_options.as_deref())?;
        let algorithm = Compression::parse(compression).ok_or_else(|| {
            py_err(Error::InvalidArgument(format!(
                "unknown compression {compression:?}: use \"zstd\", \"gzip\" or \"none\""
            )))
        })?;
        let options = InitOptions {
            compression: algorithm,
            compression_level: level,
            kdf: kdf_params(kdf_memory_kib, kdf_iterations),
            pack_size: pack_size.unwrap_or(InitOptions::default().pack_size),
            delta: delta.unwrap_or(InitOptions::default().delta),
            ..InitOptions::default()
        };
        if !AnyStorage::is_url(&path) && path.exists() && !path.is_dir() {
            return Err(py_err(Error::RepositoryExists {
                location: format!("{} (a file is in the way)", path.display()),
            }));
        }
        let repo = py
            .detach(|| {
                let storage = AnyStorage::at(&path, &settings)?;
                storage.prepare_for_init()?;
                Repository::init(
                    storage,
                    passphrase.as_deref(),
                    &options,
                    &created_at,
                    &comment,
                    &mut OsRng,
                )
            })
            .map_err(py_err)?;
        Ok(NativeRepository::new(repo, hostname, stale_after_ms))
    }

    /// Open the repository at `path`. `stale_after_ms`: the storage-clock age after which
    /// another holder's lock is stale (default 30 minutes; every host should use the same).
    #[staticmethod]
    #[pyo3(signature = (path, passphrase, hostname, stale_after_ms=None, storage_options=None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        passphrase: Option<Vec<u8>>,
        hostname: String,
        stale_after_ms: Option<i64>,
        storage_options: Option<String>,
    ) -> PyResult<Self> {
        let settings = s3_settings(storage_options.as_deref())?;
        let repo = py
            .detach(|| {
                let storage = AnyStorage::at(&path, &settings)?;
                Repository::open(storage, passphrase.as_deref()).map_err(|e| {
                    match e {
                        // Say why, when object storage can tell more than "no config.json".
                        Error::RepositoryNotFound { location } => Error::RepositoryNotFound {
                            location: match AnyStorage::at(&path, &settings)
                                .ok()
                                .and_then(|s| s.missing_reason())
                            {
                                Some(reason) => format!("{location} ({reason})"),
                                None => location,
                            },
                        },
                        e => e,
                    }
                })
            })
            .map_err(py_err)?;
        Ok(NativeRepository::new(repo, hostname, stale_after_ms))
    }

    /// `config.json` as a JSON string.
    /// Whether new chunks may be stored as deltas.
    #[getter]
    fn delta(&self) -> bool {
        self.repo.delta()
    }

    /// Turn delta encoding on (`config.json` gains the `delta` feature).
    fn enable_delta(&self, py: Python<'_>) -> PyResult<()> {
        let repo = self.repo.clone();
        py.detach(move || repo.enable_delta()).map_err(py_err)
    }

    fn config_json(&self) -> String {
        serde_json::to_string(self.repo.config()).expect("config serializes")
    }

    /// Where the repository is.
    #[getter]
    fn location(&self) -> String {
        use containerarchive_core::Storage;
        self.repo.storage().location()
    }

    /// JSON `{"snapshots": [...], "unreadable": [{"id", "reason"}]}`: the snapshots matching
    /// the filter, oldest first, and those whose manifest cannot be read.
    #[pyo3(signature = (tags, after=None, before=None, host=None))]
    fn scan_snapshots(
        &self,
        py: Python<'_>,
        tags: BTreeMap<String, String>,
        after: Option<String>,
        before: Option<String>,
        host: Option<String>,
    ) -> PyResult<String> {
        let filter = SnapshotFilter {
            tags,
            after: time_arg("after", after)?,
            before: time_arg("before", before)?,
            host,
        };
        let scan = py
            .detach(|| self.repo.scan_snapshots(&filter))
            .map_err(py_err)?;
        let doc = serde_json::json!({
            "snapshots": scan.snapshots.iter().map(|s| s.view()).collect::<Vec<_>>(),
            "unreadable": scan
                .unreadable
                .iter()
                .map(UnreadableSnapshot::view)
                .collect::<Vec<_>>(),
        });
        Ok(doc.to_string())
    }

    /// The newest snapshot (JSON) matching the filter; fails naming any manifest that cannot
    /// be read (it may be newer).
    #[pyo3(signature = (tags, host=None))]
    fn latest_snapshot(
        &self,
        py: Python<'_>,
        tags: BTreeMap<String, String>,
        host: Option<String>,
    ) -> PyResult<String> {
        let filter = SnapshotFilter {
            tags,
            host,
            ..Default::default()
        };
        let s = py
            .detach(|| self.repo.latest_snapshot(&filter))
            .map_err(py_err)?;
        Ok(snapshot_json(&s))
    }

    /// One snapshot (JSON) by id, unique prefix or `latest`.
    fn get_snapshot(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let s = py.detach(|| self.repo.get_snapshot(id)).map_err(py_err)?;
        Ok(snapshot_json(&s))
    }

    /// Start an ingest (takes a shared lock, renewed in the background until it ends) of a
    /// snapshot recording `host` (this machine's hostname when not given).
    #[pyo3(signature = (pid, created_at, host=None))]
    fn begin_ingest(
        &self,
        py: Python<'_>,
        pid: u32,
        created_at: String,
        host: Option<String>,
    ) -> PyResult<NativeIngest> {
        let host = host.unwrap_or_else(|| self.hostname.clone());
        containerarchive_core::validate::validate_host(&host).map_err(py_err)?;
        let mut info = self.lock_info(pid, "ingest");
        info.exclusive = false;
        info.created_at = created_at;
        let mut ingest = py
            .detach(|| self.with_policy(|policy| self.repo.ingest(&info, Box::new(OsRng), policy)))
            .map_err(py_err)?;
        ingest.set_host(&host).map_err(py_err)?;
        Ok(NativeIngest {
            inner: Mutex::new(Some(ingest)),
            pid: std::process::id(),
        })
    }

    /// Take a lock (renewed in the background until released).
    fn lock(
        &self,
        py: Python<'_>,
        exclusive: bool,
        operation: String,
        pid: u32,
    ) -> PyResult<NativeLock> {
        let mut info = self.lock_info(pid, &operation);
        info.exclusive = exclusive;
        let held = py
            .detach(|| self.with_policy(|policy| self.repo.lock(&info, &mut OsRng, policy)))
            .map_err(py_err)?;
        Ok(NativeLock {
            repo: self.repo.clone(),
            held,
            pid: std::process::id(),
        })
    }

    /// Restore one item to file descriptor `fd` (stdout, a pipe); returns the bytes written.
    /// The descriptor is not closed.
    #[pyo3(signature = (snapshot_id, item, fd, progress=None))]
    fn restore_to_fd(
        &self,
        py: Python<'_>,
        snapshot_id: &str,
        item: &str,
        fd: i32,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let mut progress = ProgressCallback::new(progress);
        let mut reader = self.item_reader(py, snapshot_id, item)?;
        let f = dup_fd(fd)?;
        let name = PathBuf::from(format!("file descriptor {fd}"));
        py.detach(|| drain_reader(&mut reader, f, &name, &mut progress).map(|(n, _)| n))
    }

    /// Verify at `level`; `on_error` (or None) is called with each finding as JSON, `progress`
    /// with `(fraction done, bytes read)`. Returns the report as JSON. An exception raised by a
    /// callback is re-raised once verify finished.
    #[pyo3(signature = (level, on_error=None, progress=None))]
    fn verify(
        &self,
        py: Python<'_>,
        level: &str,
        on_error: Option<Py<PyAny>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let level = VerifyLevel::parse(level).ok_or_else(|| {
            py_err(Error::InvalidArgument(format!(
                "unknown verify level {level:?}: use \"quick\", \"standard\" or \"full\""
            )))
        })?;
        let callback_error: Mutex<Option<PyErr>> = Mutex::new(None);
        let report = py.detach(|| {
            let on_error = &mut |finding: &Finding| {
                if let Some(cb) = &on_error {
                    let json = serde_json::to_string(finding).expect("finding serializes");
                    Python::attach(|py| keep_first(&callback_error, cb.call1(py, (json,))));
                }
            };
            let on_progress = &mut |p: &Progress<'_>| {
                if let Some(cb) = &progress {
                    Python::attach(|py| {
                        keep_first(&callback_error, cb.call1(py, (p.fraction, p.bytes)))
                    });
                }
                self.interrupts.poll()
            };
            self.repo.verify(
                VerifyOptions::new(level)
                    .on_error(on_error)
                    .on_progress(on_progress),
            )
        });
        let report = self.interrupts.outcome(report.map_err(py_err))?;
        if let Some(e) = callback_error
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            return Err(e);
        }
        Ok(serde_json::to_string(&report).expect("report serializes"))
    }

    /// Rebuild the index from the packs; returns the report as JSON.
    fn reindex(&self, py: Python<'_>, pid: u32) -> PyResult<String> {
        self.maintain(py, pid, "reindex", |repo, info, stale| {
            repo.reindex(info, &mut OsRng, stale)
        })
    }

    /// Repair from parity; returns the report as JSON.
    fn repair(&self, py: Python<'_>, pid: u32) -> PyResult<String> {
        self.maintain(py, pid, "repair", |repo, info, stale| {
            repo.repair(info, &mut OsRng, stale)
        })
    }

    /// Apply a retention policy (restic's rules: counts with 0 = off and -1 = unlimited,
    /// restic durations, keep-tag entries `k=v[,k=v…]`) to each group (`group_by`: any of
    /// host, items, tags) of the snapshots with `tags` (and `host`), then collect garbage;
    /// returns the report as JSON. `now` is this host's clock (RFC 3339). `progress` is called
    /// with `(bytes done, bytes in all, message)`; an exception it raises is re-raised once
    /// prune finished.
    #[pyo3(signature = (pid, tags, dry_run, counts, spans, keep_tags, group_by, now, host=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn prune(
        &self,
        py: Python<'_>,
        pid: u32,
        tags: BTreeMap<String, String>,
        dry_run: bool,
        counts: [i64; 6],
        spans: [String; 6],
        keep_tags: Vec<String>,
        group_by: Vec<String>,
        now: String,
        host: Option<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let span = |s: &str| Span::parse(s).map_err(py_err);
        let policy = Policy {
            keep_last: counts[0],
            keep_hourly: counts[1],
            keep_daily: counts[2],
            keep_weekly: counts[3],
            keep_monthly: counts[4],
            keep_yearly: counts[5],
            keep_within: span(&spans[0])?,
            keep_within_hourly: span(&spans[1])?,
            keep_within_daily: span(&spans[2])?,
            keep_within_weekly: span(&spans[3])?,
            keep_within_monthly: span(&spans[4])?,
            keep_within_yearly: span(&spans[5])?,
            keep_tags: keep_tags
                .iter()
                .map(|t| parse_tag_set(t))
                .collect::<Result<_, _>>()
                .map_err(py_err)?,
        };
        let retention = Retention {
            policy,
            group_by: GroupBy::parse(&group_by).map_err(py_err)?,
            filter: SnapshotFilter {
                tags,
                host,
                ..SnapshotFilter::default()
            },
            now: time_arg("now", Some(now))?,
        };
        self.collecting(py, pid, "prune", progress, |repo, info, stale, options| {
            repo.prune(
                &retention,
                options.dry_run(dry_run),
                info,
                &mut OsRng,
                stale,
            )
        })
    }

    /// Remove exactly the snapshots `ids` names (ids or unique prefixes) and collect the
    /// garbage only they made; returns the report as JSON (as prune's).
    #[pyo3(signature = (pid, ids, dry_run, progress=None))]
    fn forget(
        &self,
        py: Python<'_>,
        pid: u32,
        ids: Vec<String>,
        dry_run: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        self.collecting(py, pid, "forget", progress, |repo, info, stale, options| {
            repo.forget(&ids, options.dry_run(dry_run), info, &mut OsRng, stale)
        })
    }

    /// Repository totals as JSON.
    fn stats(&self, py: Python<'_>) -> PyResult<String> {
        let st = py.detach(|| self.repo.stats()).map_err(py_err)?;
        Ok(serde_json::to_string(&st).expect("stats serialize"))
    }

    /// The files restoring `item` (or the whole snapshot) needs, as JSON.
    #[pyo3(signature = (snapshot_id, item=None))]
    fn restore_plan(
        &self,
        py: Python<'_>,
        snapshot_id: &str,
        item: Option<String>,
    ) -> PyResult<String> {
        let plan = py
            .detach(|| {
                let snap = self.repo.get_snapshot(snapshot_id)?;
                self.repo.restore_plan(&snap, item.as_deref())
            })
            .map_err(py_err)?;
        Ok(serde_json::to_string(&plan).expect("plan serializes"))
    }

    /// Key files as JSON.
    fn list_keys(&self, py: Python<'_>) -> PyResult<String> {
        let keys = py.detach(|| self.repo.list_keys()).map_err(py_err)?;
        Ok(serde_json::to_string(&keys).expect("keys serialize"))
    }

    /// Add a key file for `passphrase`; returns its id.
    #[pyo3(signature = (passphrase, kdf_memory_kib=None, kdf_iterations=None, comment=String::new()))]
    fn add_key(
        &self,
        py: Python<'_>,
        passphrase: Vec<u8>,
        kdf_memory_kib: Option<u32>,
        kdf_iterations: Option<u32>,
        comment: String,
    ) -> PyResult<String> {
        let kdf = kdf_params(kdf_memory_kib, kdf_iterations);
        self.rekey(py, |repo| {
            repo.add_key(&passphrase, kdf, &now_rfc3339(), &comment, &mut OsRng)
        })
    }

    /// Replace the key in use by one for `passphrase`; returns the new key id.
    #[pyo3(signature = (passphrase, kdf_memory_kib=None, kdf_iterations=None, comment=String::new()))]
    fn change_passphrase(
        &self,
        py: Python<'_>,
        passphrase: Vec<u8>,
        kdf_memory_kib: Option<u32>,
        kdf_iterations: Option<u32>,
        comment: String,
    ) -> PyResult<String> {
        let kdf = kdf_params(kdf_memory_kib, kdf_iterations);
        self.rekey(py, |repo| {
            repo.change_passphrase(&passphrase, kdf, &now_rfc3339(), &comment, &mut OsRng)
        })
    }

    /// Remove a key file by id or unique prefix.
    fn remove_key(&self, py: Python<'_>, id: String) -> PyResult<()> {
        py.detach(|| self.repo.remove_key(&id)).map_err(py_err)
    }

    /// Remove stale locks (all with `force`); returns `{"removed": [[key, why]…], "kept":
    /// [[key, who and when stale]…]}` as JSON.
    fn remove_locks(&self, py: Python<'_>, force: bool, pid: u32) -> PyResult<String> {
        let info = self.lock_info(pid, "unlock");
        let report = py
            .detach(|| {
                self.with_policy(|policy| self.repo.remove_locks(force, policy, &info, &mut OsRng))
            })
            .map_err(py_err)?;
        Ok(serde_json::to_string(&report).expect("report serializes"))
    }

    /// The storage-clock age after which a lock is stale, in milliseconds.
    #[getter]
    fn stale_after_ms(&self) -> i64 {
        self.stale_after_ms
    }

    /// A reader over one item.
    fn reader(&self, py: Python<'_>, snapshot_id: &str, item: &str) -> PyResult<NativeReader> {
        Ok(NativeReader {
            inner: Mutex::new(self.item_reader(py, snapshot_id, item)?),
        })
    }

    /// Restore one item into the file `path` (written under a temporary name, then renamed).
    /// `progress(bytes_done)` is called after each batch.
    #[pyo3(signature = (snapshot_id, item, path, progress=None))]
    fn restore_to(
        &self,
        py: Python<'_>,
        snapshot_id: &str,
        item: &str,
        path: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let mut progress = ProgressCallback::new(progress);
        let mut reader = self.item_reader(py, snapshot_id, item)?;
        py.detach(|| {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
            let result = (|| -> PyResult<u64> {
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .map_err(|e| io_err(&tmp, e))?;
                let (total, f) = drain_reader(&mut reader, f, &tmp, &mut progress)?;
                f.sync_all().map_err(|e| io_err(&tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
                Ok(total)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
    }
}
