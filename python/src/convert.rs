//! Arguments from Python and results back: times, KDF costs, storage options, snapshots as
//! JSON, and progress callbacks.

use std::sync::Mutex;

use containerarchive_core::crypto::KdfParams;
use containerarchive_core::snapshot::parse_time;
use containerarchive_core::{Error, Snapshot};
use pyo3::prelude::*;

use crate::errors::py_err;
use crate::storage::s3::S3Settings;

pub(crate) fn snapshot_json(s: &Snapshot) -> String {
    s.view().to_string()
}

pub(crate) fn time_arg(
    name: &str,
    value: Option<String>,
) -> PyResult<Option<chrono::DateTime<chrono::FixedOffset>>> {
    value
        .map(|s| parse_time(&s).map_err(|e| py_err(Error::InvalidArgument(format!("{name}: {e}")))))
        .transpose()
}

pub(crate) fn kdf_params(memory_kib: Option<u32>, iterations: Option<u32>) -> KdfParams {
    let d = KdfParams::default();
    KdfParams {
        memory_kib: memory_kib.unwrap_or(d.memory_kib),
        iterations: iterations.unwrap_or(d.iterations),
        parallelism: d.parallelism,
    }
}

/// The object storage settings the Python layer resolved (JSON of [`S3Settings`]).
pub(crate) fn s3_settings(json: Option<&str>) -> PyResult<S3Settings> {
    json.map(serde_json::from_str)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            py_err(Error::InvalidArgument(format!(
                "storage options are not valid: {e}"
            )))
        })
}

/// A Python progress callback, called with the bytes done so far after each block; the first
/// exception it raises stops the work and is returned.
pub(crate) struct ProgressCallback {
    pub(crate) callback: Option<Py<PyAny>>,
    pub(crate) done: u64,
}

impl ProgressCallback {
    pub(crate) fn new(callback: Option<Py<PyAny>>) -> Self {
        ProgressCallback { callback, done: 0 }
    }

    pub(crate) fn advance(&mut self, bytes: u64) -> PyResult<()> {
        self.done += bytes;
        match &self.callback {
            Some(cb) => Python::attach(|py| cb.call1(py, (self.done,)).map(|_| ())),
            None => Ok(()),
        }
    }
}

/// Keep the first exception a callback raised (later ones are consequences or repeats).
pub(crate) fn keep_first(slot: &Mutex<Option<PyErr>>, result: PyResult<Py<PyAny>>) {
    if let Err(e) = result {
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
    }
}
