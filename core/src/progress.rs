//! One shape of progress for every long operation of the core (verify, prune, forget), so
//! that each face (Python events, CLI bars, the browser page) reads it in one place.
//!
//! The core calls the callback between steps; the callback may stop the operation by returning
//! an error (the bindings return [`crate::Error::Cancelled`] when a signal arrived): the
//! operation stops there, as after a crash at that point, and returns that error. Throttling
//! is the face's business.

use crate::error::Result;

/// How far a long operation is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress<'a> {
    /// Fraction done, 0 to 1.
    pub fraction: f64,
    /// Bytes processed so far: read (verify), or read for rewriting and deleted (prune).
    pub bytes: u64,
    /// Bytes the operation processes in all, when it knows them in advance (prune).
    pub total_bytes: Option<u64>,
    /// What it is doing now, in words (empty when the operation does not say).
    pub message: &'a str,
}

impl<'a> Progress<'a> {
    /// `done` of `total` bytes, doing `message` (fraction 0 while `total` is 0).
    pub fn of_bytes(done: u64, total: u64, message: &'a str) -> Self {
        Progress {
            fraction: if total == 0 {
                0.0
            } else {
                (done as f64 / total as f64).min(1.0)
            },
            bytes: done,
            total_bytes: Some(total),
            message,
        }
    }
}

/// A caller's progress callback (see the module doc).
pub type OnProgress<'a> = &'a mut dyn FnMut(&Progress<'_>) -> Result<()>;
