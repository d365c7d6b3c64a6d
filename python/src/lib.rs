//! The native half of the `containerarchive` Python package.
//!
//! Thin wrappers only: convert arguments, release the GIL, call the core, convert results.
//! Filesystem storage (`fs`) and OS randomness are the I/O this crate adds to the core.

mod backend;
mod fs;
mod locking;
mod pipe;
mod s3;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use containerarchive_core::crypto::KdfParams;
use containerarchive_core::lock::{HeldLock, LockPolicy, DEFAULT_STALE_AFTER_MS};
use containerarchive_core::ops::prune::{PruneReport, Retention};
use containerarchive_core::ops::verify::VerifyLevel;
use containerarchive_core::retention::{parse_tag_set, GroupBy, Policy, Span};
use containerarchive_core::snapshot::parse_time;
use containerarchive_core::{
    Compression, Error, Ingest, InitOptions, ItemReader, LockInfo, RandomSource, Repository,
    Snapshot, SnapshotFilter, StorageError,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::backend::AnyStorage;
use crate::s3::S3Settings;

/// Randomness from the operating system.
pub struct OsRng;

impl RandomSource for OsRng {
    fn fill(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("the operating system provides randomness");
    }
}

/// Raise the Python exception class of `containerarchive.errors` that matches `e`, with the
/// object it names as attributes (`snapshot`, `item`, `lock`, `object`, `key`…).
fn py_err(e: Error) -> PyErr {
    Python::attach(|py| {
        let text = |v: &String| PyString::new(py, v).into_any().unbind();
        let list = |v: &Vec<String>| {
            PyList::new(py, v)
                .expect("strings convert")
                .into_any()
                .unbind()
        };
        // The class comes from the core's one table; here only what each class carries.
        let class = e.name();
        let attrs: Vec<(&str, Py<PyAny>)> = match &e {
            Error::RepositoryNotFound { location } | Error::RepositoryExists { location } => {
                vec![("location", text(location))]
            }
            Error::NotEmpty { location, .. } => vec![("path", text(location))],
            Error::SnapshotNotFound(id) => vec![("snapshot", text(id))],
            Error::KeyNotFound(id) => vec![("key", text(id))],
            Error::AmbiguousSnapshotId { prefix, matches } => {
                vec![("snapshot", text(prefix)), ("matches", list(matches))]
            }
            Error::ItemNotFound {
                snapshot,
                item,
                available,
            } => vec![
                ("snapshot", text(snapshot)),
                ("item", text(item)),
                ("available", list(available)),
            ],
            Error::Corruption { object, .. } | Error::ConcurrentModification { object, .. } => {
                vec![("object", text(object))]
            }
            Error::Locked { lock, holder } => vec![("lock", text(lock)), ("holder", text(holder))],
            Error::Storage(StorageError::Archived { key, class }) => {
                vec![("key", text(key)), ("storage_class", text(class))]
            }
            Error::Storage(
                StorageError::NotFound(k)
                | StorageError::AlreadyExists(k)
                | StorageError::Backend { key: k, .. },
            ) => vec![("key", text(k))],
            Error::WrongPassphrase(_)
            | Error::Cancelled(_)
            | Error::InvalidArgument(_)
            | Error::Unsupported(_) => vec![],
        };
        let build = || -> PyResult<PyErr> {
            let exc = py
                .import("containerarchive.errors")?
                .getattr(class)?
                .call1((e.to_string(),))?;
            for (name, value) in attrs {
                exc.setattr(name, value)?;
            }
            Ok(PyErr::from_value(exc))
        };
        build().unwrap_or_else(|err| err)
    })
}

/// A `File` on a duplicate of `fd`, so that closing it leaves the caller's descriptor open.
fn dup_fd(fd: i32) -> PyResult<File> {
    use std::os::fd::BorrowedFd;
    if fd < 0 {
        return Err(py_err(Error::InvalidArgument(format!(
            "invalid file descriptor {fd}"
        ))));
    }
    // SAFETY: the caller passes a descriptor it keeps open for the duration of this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed
        .try_clone_to_owned()
        .map_err(|e| io_err(Path::new(&format!("file descriptor {fd}")), e))?;
    Ok(File::from(owned))
}

/// A `StorageError` naming `path`, with the OS error number as `errno` (so that a caller can
/// tell, say, a reader that closed the pipe — EPIPE — from a failing disk).
fn io_err(path: &Path, e: std::io::Error) -> PyErr {
    let err = py_err(Error::Storage(StorageError::Backend {
        key: path.display().to_string(),
        message: e.to_string(),
    }));
    if let Some(code) = e.raw_os_error() {
        Python::attach(|py| {
            let _ = err.value(py).setattr("errno", code);
        });
    }
    err
}

fn snapshot_json(s: &Snapshot) -> String {
    let mut v = serde_json::to_value(&s.manifest).expect("manifest serializes");
    v["id"] = serde_json::Value::String(s.id.to_hex());
    v.to_string()
}

fn time_arg(
    name: &str,
    value: Option<String>,
) -> PyResult<Option<chrono::DateTime<chrono::FixedOffset>>> {
    value
        .map(|s| parse_time(&s).map_err(|e| py_err(Error::InvalidArgument(format!("{name}: {e}")))))
        .transpose()
}

type Repo = Repository<AnyStorage>;

fn kdf_params(memory_kib: Option<u32>, iterations: Option<u32>) -> KdfParams {
    let d = KdfParams::default();
    KdfParams {
        memory_kib: memory_kib.unwrap_or(d.memory_kib),
        iterations: iterations.unwrap_or(d.iterations),
        parallelism: d.parallelism,
    }
}

/// This host's clock, for people (lock files show it; no decision depends on it).
pub(crate) fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Check for a pending Python signal (SIGINT, SIGTERM…) from native code that released the
/// GIL: runs the Python handlers, whose exception is returned.
fn check_signals() -> PyResult<()> {
    Python::attach(|py| py.check_signals())
}

/// Signal checks from inside core operations (their progress callbacks and interrupt hook),
/// at most every 100 ms: the first exception a Python signal handler raises is kept, and the
/// core is told to stop (`Error::Cancelled`); the operation then raises that exception.
#[derive(Default)]
struct Interrupts {
    raised: Mutex<Option<PyErr>>,
    last: Mutex<Option<std::time::Instant>>,
}

impl Interrupts {
    fn poll(&self) -> Result<(), Error> {
        let mut raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        if raised.is_none() {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100)) {
                *last = Some(std::time::Instant::now());
                *raised = check_signals().err();
            }
        }
        match *raised {
            Some(_) => Err(Error::Cancelled("interrupted by a signal".into())),
            None => Ok(()),
        }
    }

    /// An operation's outcome, the signal's exception first.
    fn outcome<T>(&self, result: PyResult<T>) -> PyResult<T> {
        match self.raised.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => result,
        }
    }
}

/// An open repository on the filesystem.
#[pyclass(module = "containerarchive._native", frozen)]
struct NativeRepository {
    repo: Repo,
    hostname: String,
    /// This process's identity in lock files (boot, pid namespace, start time), with the pid
    /// it was read in: a forked child reads its own.
    process: Mutex<(u32, String)>,
    /// Storage-clock age after which another holder's lock is stale (milliseconds).
    stale_after_ms: i64,
    /// Renews this handle's locks while it lives (a forked child starts its own).
    refresher: Mutex<locking::Refresher>,
    /// Signals that arrived during this handle's native work.
    interrupts: Arc<Interrupts>,
}

impl NativeRepository {
    /// The reader of one item of a snapshot (id, prefix or "latest").
    fn item_reader(
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

    fn new(repo: Repo, hostname: String, stale_after_ms: Option<i64>) -> Self {
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
    fn collecting(
        &self,
        py: Python<'_>,
        pid: u32,
        operation: &str,
        progress: Option<Py<PyAny>>,
        run: impl FnOnce(
                &Repo,
                &LockInfo,
                &LockPolicy<'_>,
                &mut dyn FnMut(u64, u64, &str) -> Result<(), Error>,
            ) -> Result<PruneReport, Error>
            + Send,
    ) -> PyResult<String> {
        let mut callback_error: Option<PyErr> = None;
        let report = self.maintain(py, pid, operation, |repo, info, stale| {
            run(repo, info, stale, &mut |done, total, message| {
                if let Some(cb) = &progress {
                    Python::attach(|py| {
                        if let Err(e) = cb.call1(py, (done, total, message)) {
                            callback_error.get_or_insert(e);
                        }
                    });
                }
                self.interrupts.poll()
            })
        })?;
        match callback_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// This process's lock identity; in a forked child, the child's (read once there), and a
    /// renewal thread of the child's own for the locks it takes.
    fn process(&self) -> String {
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

    fn with_policy<T>(&self, f: impl FnOnce(&LockPolicy<'_>) -> T) -> T {
        let me = self.process();
        let gone = |l: &LockInfo| locking::holder_gone(&self.hostname, &me, l);
        f(&LockPolicy {
            stale_after_ms: self.stale_after_ms,
            holder_gone: &gone,
        })
    }

    /// Run a maintenance operation under this process's lock identity with the GIL released;
    /// its report as JSON.
    fn maintain<T: serde::Serialize + Send>(
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
    fn rekey(
        &self,
        py: Python<'_>,
        write: impl FnOnce(&Repo) -> Result<String, Error> + Send,
    ) -> PyResult<String> {
        py.detach(|| write(&self.repo)).map_err(py_err)
    }

    fn lock_info(&self, pid: u32, operation: &str) -> LockInfo {
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
    #[pyo3(signature = (path, passphrase, compression, level, kdf_memory_kib, kdf_iterations, created_at, comment, hostname, pack_size=None, stale_after_ms=None, storage_options=None))]
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
    fn config_json(&self) -> String {
        serde_json::to_string(self.repo.config()).expect("config serializes")
    }

    /// Where the repository is.
    #[getter]
    fn location(&self) -> String {
        use containerarchive_core::Storage;
        self.repo.storage().location()
    }

    /// Snapshots (JSON objects) matching the filter, oldest first.
    #[pyo3(signature = (tags, after=None, before=None, host=None))]
    fn list_snapshots(
        &self,
        py: Python<'_>,
        tags: BTreeMap<String, String>,
        after: Option<String>,
        before: Option<String>,
        host: Option<String>,
    ) -> PyResult<Vec<String>> {
        let filter = SnapshotFilter {
            tags,
            after: time_arg("after", after)?,
            before: time_arg("before", before)?,
            host,
        };
        let snaps = py
            .detach(|| self.repo.list_snapshots(&filter))
            .map_err(py_err)?;
        Ok(snaps.iter().map(snapshot_json).collect())
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
            self.repo.verify_with_progress(
                level,
                &mut |finding| {
                    if let Some(cb) = &on_error {
                        let json = serde_json::to_string(finding).expect("finding serializes");
                        Python::attach(|py| keep_first(&callback_error, cb.call1(py, (json,))));
                    }
                },
                &mut |fraction, bytes| {
                    if let Some(cb) = &progress {
                        Python::attach(|py| {
                            keep_first(&callback_error, cb.call1(py, (fraction, bytes)))
                        });
                    }
                    self.interrupts.poll()
                },
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
        self.collecting(
            py,
            pid,
            "prune",
            progress,
            |repo, info, stale, on_progress| {
                repo.prune_with_progress(&retention, dry_run, info, &mut OsRng, stale, on_progress)
            },
        )
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
        self.collecting(
            py,
            pid,
            "forget",
            progress,
            |repo, info, stale, on_progress| {
                repo.forget(&ids, dry_run, info, &mut OsRng, stale, on_progress)
            },
        )
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

/// A Python progress callback, called with the bytes done so far after each block; the first
/// exception it raises stops the work and is returned.
struct ProgressCallback {
    callback: Option<Py<PyAny>>,
    done: u64,
}

impl ProgressCallback {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        ProgressCallback { callback, done: 0 }
    }

    fn advance(&mut self, bytes: u64) -> PyResult<()> {
        self.done += bytes;
        match &self.callback {
            Some(cb) => Python::attach(|py| cb.call1(py, (self.done,)).map(|_| ())),
            None => Ok(()),
        }
    }
}

fn batch_len(batch: &Option<Vec<Vec<u8>>>) -> u64 {
    batch
        .as_ref()
        .map_or(0, |b| b.iter().map(|c| c.len() as u64).sum())
}

/// Write every batch of `reader` to `dst` (a writer thread overlaps the writing with decoding
/// the next batch), telling `progress` after each; the bytes written and `dst` back.
fn drain_reader<W: std::io::Write + Send + 'static>(
    reader: &mut ItemReader<AnyStorage>,
    dst: W,
    name: &std::path::Path,
    progress: &mut ProgressCallback,
) -> PyResult<(u64, W)> {
    pipe::drain(
        dst,
        |e| io_err(name, e),
        check_signals,
        || {
            let batch = reader.next_batch().map_err(py_err)?;
            progress.advance(batch_len(&batch))?;
            Ok(batch)
        },
    )
}

/// Keep the first exception a callback raised (later ones are consequences or repeats).
fn keep_first(slot: &Mutex<Option<PyErr>>, result: PyResult<Py<PyAny>>) {
    if let Err(e) = result {
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
    }
}

/// A lock held through [`NativeRepository::lock`].
#[pyclass(module = "containerarchive._native", frozen)]
struct NativeLock {
    repo: Repo,
    held: Arc<HeldLock>,
    /// The process that took it: only that process releases it (a forked child leaving a
    /// `with repo.lock():` block must not remove its parent's lock).
    pid: u32,
}

#[pymethods]
impl NativeLock {
    /// The lock file's current key (it changes at each renewal), or None once released.
    #[getter]
    fn key(&self) -> Option<String> {
        self.held.key()
    }

    /// Remove the lock (retried; an error names the lock file left behind).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.pid != std::process::id() {
            return Ok(()); // the parent's lock: it releases it
        }
        py.detach(|| self.repo.unlock(&self.held)).map_err(py_err)
    }
}

/// An ingest in progress.
#[pyclass(module = "containerarchive._native", frozen)]
struct NativeIngest {
    inner: Mutex<Option<Ingest<AnyStorage>>>,
    /// The process that started it: a forked child neither commits nor aborts it (aborting
    /// would remove the parent's lock), and leaves it alone when the object is dropped.
    pid: u32,
}

impl Drop for NativeIngest {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            let parents = self
                .inner
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            std::mem::forget(parents);
        }
    }
}

impl NativeIngest {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Ingest<AnyStorage>) -> Result<T, PyErr> + Send,
    ) -> PyResult<T> {
        self.owned()?;
        py.detach(|| {
            let mut guard = self
                .inner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("ingest poisoned by an earlier panic"))?;
            let ingest = guard.as_mut().ok_or_else(|| {
                py_err(Error::InvalidArgument(
                    "this ingest is already committed or aborted".into(),
                ))
            })?;
            f(ingest)
        })
    }

    /// One block of a long stream: written, progress told (the lock is renewed by the
    /// repository's timer, also while the stream is silent).
    fn write_block(
        &self,
        ingest: &mut Ingest<AnyStorage>,
        block: &[u8],
        progress: &mut ProgressCallback,
    ) -> PyResult<()> {
        ingest.write(block).map_err(py_err)?;
        progress.advance(block.len() as u64)
    }

    /// Refuse to work on an ingest a parent process started (after `fork()`).
    fn owned(&self) -> PyResult<()> {
        if self.pid == std::process::id() {
            return Ok(());
        }
        Err(py_err(Error::InvalidArgument(format!(
            "this ingest was started by process {} before it forked: start a new one in this process",
            self.pid
        ))))
    }

    /// The ingest, taken out for commit or abort. The mutex is waited for with the GIL
    /// released: a write holding it checks for signals, which needs the GIL.
    fn take(&self, py: Python<'_>) -> PyResult<Option<Ingest<AnyStorage>>> {
        self.owned()?;
        py.detach(|| {
            self.inner
                .lock()
                .map(|mut g| g.take())
                .map_err(|_| PyRuntimeError::new_err("ingest poisoned by an earlier panic"))
        })
    }
}

#[pymethods]
impl NativeIngest {
    /// Begin an item.
    fn start_item(&self, py: Python<'_>, name: String, kind: String) -> PyResult<()> {
        self.with(py, |i| i.start_item(&name, &kind).map_err(py_err))
    }

    /// Add bytes to the current item.
    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.with(py, |i| i.write(data).map_err(py_err))
    }

    /// Add a whole file's content to the current item; returns the bytes read.
    /// `progress(bytes_done)` is called after each block.
    #[pyo3(signature = (path, progress=None))]
    fn write_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let mut progress = ProgressCallback::new(progress);
        self.with(py, |i| {
            let f = File::open(&path).map_err(|e| io_err(&path, e))?;
            pipe::feed(
                f,
                |e| io_err(&path, e),
                check_signals,
                |block| self.write_block(i, block, &mut progress),
            )
        })
    }

    /// Add everything readable from file descriptor `fd` (a pipe, stdin, a file at its current
    /// offset) to the current item; returns the bytes read. The descriptor is not closed.
    /// `progress(bytes_done)` is called after each block.
    #[pyo3(signature = (fd, progress=None))]
    fn write_fd(&self, py: Python<'_>, fd: i32, progress: Option<Py<PyAny>>) -> PyResult<u64> {
        let mut progress = ProgressCallback::new(progress);
        let f = dup_fd(fd)?;
        let name = PathBuf::from(format!("file descriptor {fd}"));
        self.with(py, |i| {
            pipe::feed(
                f,
                |e| io_err(&name, e),
                check_signals,
                |block| self.write_block(i, block, &mut progress),
            )
        })
    }

    /// Record that the current item is the standard output of `argv`, which exited with
    /// `exit_status` (only 0 is accepted: a failed command must abort the ingest).
    fn set_item_command(
        &self,
        py: Python<'_>,
        argv: Vec<String>,
        exit_status: i32,
    ) -> PyResult<()> {
        self.with(py, |i| {
            i.set_item_command(argv, exit_status).map_err(py_err)
        })
    }

    /// End the current item.
    fn finish_item(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |i| i.finish_item().map_err(py_err))
    }

    /// Write the snapshot; returns it as JSON.
    fn commit(
        &self,
        py: Python<'_>,
        created_at: String,
        tags: BTreeMap<String, String>,
    ) -> PyResult<String> {
        let time = time_arg("time", Some(created_at))?.expect("given");
        let ingest = self.take(py)?.ok_or_else(|| {
            py_err(Error::InvalidArgument(
                "this ingest is already committed or aborted".into(),
            ))
        })?;
        let snap = py.detach(|| ingest.commit(&time, tags)).map_err(py_err)?;
        Ok(snapshot_json(&snap))
    }

    /// Give up; nothing is committed.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        match self.take(py).ok().flatten() {
            Some(ingest) => py.detach(|| ingest.abort()).map_err(py_err),
            None => Ok(()),
        }
    }
}

/// Reads one item's content in verified batches.
#[pyclass(module = "containerarchive._native", frozen)]
struct NativeReader {
    inner: Mutex<ItemReader<AnyStorage>>,
}

#[pymethods]
impl NativeReader {
    /// The next few MiB of content, or `None` at the end.
    fn read_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let batch = py.detach(|| {
            let mut r = self
                .inner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("reader poisoned by an earlier panic"))?;
            r.next_batch().map_err(py_err)
        })?;
        Ok(batch.map(|chunks| {
            let total = chunks.iter().map(Vec::len).sum();
            PyBytes::new_with(py, total, |buf| {
                let mut o = 0;
                for c in &chunks {
                    buf[o..o + c.len()].copy_from_slice(c);
                    o += c.len();
                }
                Ok(())
            })
            .expect("filling a new bytes object cannot fail")
        }))
    }
}

/// Tune glibc's malloc for the engine's pattern: multi-megabyte buffers allocated and freed at
/// a high rate on several threads. By default glibc hands each back to the kernel and faults it
/// in again (seconds of system time per GiB) and spreads them over many arenas. Keeping blocks
/// under 32 MiB in two arenas halves system time at the same peak RSS (measured: ingest of
/// 1 GiB of random data 6.7 s → 4.9 s, ~120 MiB RSS). Left alone if the user tuned malloc.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES")
        });
        if !tuned {
            // SAFETY: mallopt only adjusts allocator parameters; any value is valid to pass.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
    }
}

/// The object storage settings the Python layer resolved (JSON of [`S3Settings`]).
fn s3_settings(json: Option<&str>) -> PyResult<S3Settings> {
    json.map(serde_json::from_str)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            py_err(Error::InvalidArgument(format!(
                "storage options are not valid: {e}"
            )))
        })
}

/// Called in a child process right after `fork()` (registered with `os.register_at_fork`):
/// the worker threads of the parent do not exist here, so the next parallel work starts new
/// ones. Storages notice the fork themselves (they compare process ids).
#[pyfunction]
fn _after_fork_in_child() {
    containerarchive_core::parallel::forget_pool();
}

/// Whether waits for object storage (throttling, outages) are reported on stderr.
#[pyfunction]
fn _report_storage_waits(enabled: bool) {
    s3::REPORT_WAITS.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    tune_malloc();
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(_report_storage_waits, m)?)?;
    m.add_class::<NativeRepository>()?;
    m.add_class::<NativeIngest>()?;
    m.add_class::<NativeLock>()?;
    m.add_class::<NativeReader>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
