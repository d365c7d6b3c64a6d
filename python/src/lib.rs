//! The native half of the `containerarchive` Python package.
//!
//! Thin wrappers only: convert arguments, release the GIL, call the core, convert results.
//! Storage (a directory or an object store), the clock, OS randomness and process identity are
//! the I/O this crate adds to the core. One file per area:
//!
//! - `repository`: `NativeRepository`, one method per core operation;
//! - `ingest`: `NativeIngest`; `reader`: `NativeReader` and restore to a file or descriptor;
//! - `locking`: `NativeLock`, this process's identity in lock files, the lock refresher;
//! - `errors`: core errors as the `containerarchive.errors` classes;
//! - `convert`: arguments in, results out; `os`: randomness, clock, descriptors, signals;
//! - `pipe`: a reader or writer thread beside the engine, two blocks in flight;
//! - `storage`: `AnyStorage` over `storage/fs.rs` (directories) and `storage/s3.rs` (S3).

mod convert;
mod errors;
mod ingest;
mod locking;
mod os;
mod pipe;
mod reader;
mod repository;
mod storage;

use crate::ingest::NativeIngest;
use crate::locking::NativeLock;
use crate::os::tune_malloc;
use crate::reader::NativeReader;
use crate::repository::NativeRepository;
use pyo3::prelude::*;

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
    storage::s3::REPORT_WAITS.store(enabled, std::sync::atomic::Ordering::Relaxed);
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
