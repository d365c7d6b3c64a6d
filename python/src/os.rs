//! What this crate takes from the operating system for the core: randomness, the clock, file
//! descriptors, malloc tuning, and Python signals checked from native code.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use containerarchive_core::{Error, RandomSource};
use pyo3::prelude::*;

use crate::errors::{io_err, py_err};

/// Randomness from the operating system.
pub struct OsRng;

impl RandomSource for OsRng {
    fn fill(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("the operating system provides randomness");
    }
}

/// A `File` on a duplicate of `fd`, so that closing it leaves the caller's descriptor open.
pub(crate) fn dup_fd(fd: i32) -> PyResult<File> {
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

/// This host's clock, for people (lock files show it; no decision depends on it).
pub(crate) fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Check for a pending Python signal (SIGINT, SIGTERM…) from native code that released the
/// GIL: runs the Python handlers, whose exception is returned.
pub(crate) fn check_signals() -> PyResult<()> {
    Python::attach(|py| py.check_signals())
}

/// Signal checks from inside core operations (their progress callbacks and interrupt hook),
/// at most every 100 ms: the first exception a Python signal handler raises is kept, and the
/// core is told to stop (`Error::Cancelled`); the operation then raises that exception.
#[derive(Default)]
pub(crate) struct Interrupts {
    pub(crate) raised: Mutex<Option<PyErr>>,
    pub(crate) last: Mutex<Option<std::time::Instant>>,
}

impl Interrupts {
    pub(crate) fn poll(&self) -> Result<(), Error> {
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
    pub(crate) fn outcome<T>(&self, result: PyResult<T>) -> PyResult<T> {
        match self.raised.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => result,
        }
    }
}

/// Tune glibc's malloc for the engine's pattern: multi-megabyte buffers allocated and freed at
/// a high rate on several threads. By default glibc hands each back to the kernel and faults it
/// in again (seconds of system time per GiB) and spreads them over many arenas. Keeping blocks
/// under 32 MiB in two arenas halves system time at the same peak RSS (measured: ingest of
/// 1 GiB of random data 6.7 s → 4.9 s, ~120 MiB RSS). Left alone if the user tuned malloc.
pub(crate) fn tune_malloc() {
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
