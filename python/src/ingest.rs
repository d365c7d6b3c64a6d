//! `NativeIngest`: an ingest held by Python, fed from bytes, files and descriptors; only the
//! process that began it may use or abort it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use containerarchive_core::{Error, Ingest};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::convert::{snapshot_json, time_arg, ProgressCallback};
use crate::errors::{io_err, py_err};
use crate::os::{check_signals, dup_fd};
use crate::pipe;
use crate::storage::AnyStorage;

/// An ingest in progress.
#[pyclass(module = "containerarchive._native", frozen)]
pub(crate) struct NativeIngest {
    pub(crate) inner: Mutex<Option<Ingest<AnyStorage>>>,
    /// The process that started it: a forked child neither commits nor aborts it (aborting
    /// would remove the parent's lock), and leaves it alone when the object is dropped.
    pub(crate) pid: u32,
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
    pub(crate) fn with<T: Send>(
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
    pub(crate) fn write_block(
        &self,
        ingest: &mut Ingest<AnyStorage>,
        block: &[u8],
        progress: &mut ProgressCallback,
    ) -> PyResult<()> {
        ingest.write(block).map_err(py_err)?;
        progress.advance(block.len() as u64)
    }

    /// Refuse to work on an ingest a parent process started (after `fork()`).
    pub(crate) fn owned(&self) -> PyResult<()> {
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
    pub(crate) fn take(&self, py: Python<'_>) -> PyResult<Option<Ingest<AnyStorage>>> {
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
