//! `NativeReader` and restore to a file or descriptor: batches of an item's content, written by
//! a writer thread while the next batch is decoded.

use std::sync::Mutex;

use containerarchive_core::ItemReader;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::ProgressCallback;
use crate::errors::{io_err, py_err};
use crate::os::check_signals;
use crate::pipe;
use crate::storage::AnyStorage;

pub(crate) fn batch_len(batch: &Option<Vec<Vec<u8>>>) -> u64 {
    batch
        .as_ref()
        .map_or(0, |b| b.iter().map(|c| c.len() as u64).sum())
}

/// Write every batch of `reader` to `dst` (a writer thread overlaps the writing with decoding
/// the next batch), telling `progress` after each; the bytes written and `dst` back.
pub(crate) fn drain_reader<W: std::io::Write + Send + 'static>(
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

/// Reads one item's content in verified batches.
#[pyclass(module = "containerarchive._native", frozen)]
pub(crate) struct NativeReader {
    pub(crate) inner: Mutex<ItemReader<AnyStorage>>,
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
