//! Core errors as Python exceptions: the class comes from the core's one table
//! ([`Error::name`]); here only the attributes each class carries, and OS errors with `errno`.

use std::path::Path;

use containerarchive_core::{Error, StorageError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

/// Raise the Python exception class of `containerarchive.errors` that matches `e`, with the
/// object it names as attributes (`snapshot`, `item`, `lock`, `object`, `key`…).
pub(crate) fn py_err(e: Error) -> PyErr {
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
            Error::Corruption { object, reason } => {
                // The snapshots the damage is about (a manifest, an item's chunks): by id.
                let ids = snapshot_ids(&format!("{object}: {reason}"));
                let first = ids.first().map_or_else(|| py.None(), &text);
                vec![
                    ("object", text(object)),
                    ("snapshot", first),
                    ("snapshots", list(&ids)),
                ]
            }
            Error::ConcurrentModification { object, .. } => vec![("object", text(object))],
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

/// A `StorageError` naming `path`, with the OS error number as `errno` (so that a caller can
/// tell, say, a reader that closed the pipe — EPIPE — from a failing disk).
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> PyErr {
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

/// Every snapshot id an error's text names ("snapshot <64 hex>", a manifest's file name
/// "<64 hex>.snapshot", or "snapshot <id>, <id>"), each once, in order.
fn snapshot_ids(text: &str) -> Vec<String> {
    let hex64 = |s: &str| s.len() >= 64 && s.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit);
    let mut ids: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_string());
        }
    };
    for (at, _) in text.match_indices("snapshot ") {
        let mut rest = &text[at + "snapshot ".len()..];
        while hex64(rest) {
            push(&rest[..64]);
            rest = rest[64..].strip_prefix(", ").unwrap_or("");
        }
    }
    for (at, _) in text.match_indices(".snapshot") {
        // `get`: the 64 bytes before may not start on a character boundary.
        if let Some(id) = at.checked_sub(64).and_then(|from| text.get(from..at)) {
            if hex64(id) {
                push(id);
            }
        }
    }
    ids
}
