//! What only this process can know about locks: who it is (host, boot, pid namespace, process
//! start), whether a lock's holder on this very machine is gone, and a timer that renews every
//! lock it holds. Staleness by age is the core's rule (the storage's clock, `lock::LockPolicy`).

use crate::errors::py_err;
use crate::repository::Repo;
use containerarchive_core::lock::HeldLock;
use pyo3::prelude::*;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use containerarchive_core::{LockInfo, Repository, Storage};

use crate::os::OsRng;

/// This process as a lock holder: `boot=<boot id>;pidns=<namespace>;start=<start ticks>`.
pub fn process_identity() -> String {
    let pid = std::process::id();
    format!(
        "boot={};pidns={};start={}",
        boot_id().unwrap_or_default(),
        pid_namespace().unwrap_or_default(),
        start_ticks(pid).unwrap_or_default()
    )
}

fn boot_id() -> Option<String> {
    Some(
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()?
            .trim()
            .to_string(),
    )
}

fn pid_namespace() -> Option<String> {
    Some(
        std::fs::read_link("/proc/self/ns/pid")
            .ok()?
            .to_string_lossy()
            .into_owned(),
    )
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

fn field<'a>(identity: &'a str, name: &str) -> Option<&'a str> {
    identity
        .split(';')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// Whether `info`'s holder is certainly gone: it ran on this host, in this boot and this pid
/// namespace (so its pid means the same here), and that pid no longer runs the process that
/// took the lock. Anything else (another host, another container with the same host name,
/// a lock from an older version without the identity) is left to the age rule.
pub fn holder_gone(me_host: &str, me_process: &str, info: &LockInfo) -> bool {
    if info.hostname != me_host || info.pid == 0 || !cfg!(target_os = "linux") {
        return false;
    }
    let same = |name: &str| {
        let theirs = field(&info.process, name);
        theirs.is_some() && theirs == field(me_process, name)
    };
    if !same("boot") || !same("pidns") {
        return false;
    }
    match start_ticks(info.pid) {
        None => true,
        Some(now) => field(&info.process, "start").is_some_and(|then| then != now),
    }
}

/// Renews every lock a repository handle holds, every `every`, until dropped.
pub struct Refresher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    /// The process whose thread it is: a forked child has the struct but not the thread.
    pid: u32,
}

impl Refresher {
    /// Start renewing `repo`'s locks.
    pub fn start<S: Storage + Send + Sync + 'static>(repo: Repository<S>, every: Duration) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ca-lock-refresh".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    // A stop asked before this thread first waited must not be missed.
                    if *stopped {
                        return;
                    }
                    let (guard, timeout) = cvar
                        .wait_timeout(stopped, every)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    if !timeout.timed_out() {
                        continue; // a spurious wake-up
                    }
                    drop(stopped);
                    // A failed renewal is retried at the next tick; the lock is stale only
                    // after the stale age, several ticks later.
                    let _ = repo.refresh_locks(&crate::os::now_rfc3339(), &mut OsRng);
                    stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                }
            })
            .ok();
        Refresher {
            stop,
            thread,
            pid: std::process::id(),
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            std::mem::forget(self.thread.take());
            return;
        }
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often locks are renewed for a stale age of `stale_after_ms` (the core's rule).
pub fn refresh_interval(stale_after_ms: i64) -> Duration {
    Duration::from_millis(containerarchive_core::lock::refresh_interval_ms(
        stale_after_ms,
    ))
}

/// A lock held through [`NativeRepository::lock`].
#[pyclass(module = "containerarchive._native", frozen)]
pub(crate) struct NativeLock {
    pub(crate) repo: Repo,
    pub(crate) held: Arc<HeldLock>,
    /// The process that took it: only that process releases it (a forked child leaving a
    /// `with repo.lock():` block must not remove its parent's lock).
    pub(crate) pid: u32,
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
