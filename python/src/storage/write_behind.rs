//! The write-behind barrier both storages use for pack data ([`may_write_in_background`]):
//! writes run on another thread (the filesystem's writer thread, the S3 client's runtime)
//! while the engine goes on, and every other operation first waits until they are durable.
//!
//! It counts writes in flight and keeps the first error; [`WriteBehind::settle`] waits for none
//! to be in flight and returns that error once. An error belongs to the operation that queued
//! the failing write: writes queued before it was reported that fail too (the disk is still
//! full) are not reported again to whatever runs next. A forked child starts with nothing in
//! flight: the parent's writes are the parent's to finish.
//!
//! [`may_write_in_background`]: containerarchive_core::storage::may_write_in_background

use std::sync::{Condvar, Mutex, MutexGuard};

use containerarchive_core::StorageError;

/// Writes in flight and the first error, for one process.
#[derive(Debug)]
struct State {
    pid: u32,
    count: usize,
    error: Option<StorageError>,
    /// Bumped each time an error is reported (see the module doc).
    epoch: u64,
}

/// One write in flight, from [`WriteBehind::begin`] to [`WriteBehind::finish`].
#[derive(Debug)]
pub struct Ticket {
    epoch: u64,
}

/// See the module doc.
#[derive(Debug)]
pub struct WriteBehind {
    state: Mutex<State>,
    done: Condvar,
}

impl Default for WriteBehind {
    fn default() -> Self {
        WriteBehind {
            state: Mutex::new(State {
                pid: std::process::id(),
                count: 0,
                error: None,
                epoch: 0,
            }),
            done: Condvar::new(),
        }
    }
}

impl WriteBehind {
    /// This process's state (a forked child forgets the parent's writes and error).
    fn state(&self) -> MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if s.pid != pid {
            s.pid = pid;
            s.count = 0;
            s.error = None;
        }
        s
    }

    /// Start a write once fewer than `max_in_flight` are in flight; the error of an earlier
    /// write, if one failed (reported once, and no write is started).
    pub fn begin(&self, max_in_flight: usize) -> Result<Ticket, StorageError> {
        let mut s = self.state();
        while s.count >= max_in_flight.max(1) && s.error.is_none() {
            s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(e) = take_error(&mut s) {
            return Err(e);
        }
        s.count += 1;
        Ok(Ticket { epoch: s.epoch })
    }

    /// A write ended with `result`.
    pub fn finish(&self, ticket: Ticket, result: Result<(), StorageError>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.pid != std::process::id() {
            return; // a write of the parent's, finishing in a thread the child does not have
        }
        s.count = s.count.saturating_sub(1);
        if let Err(e) = result {
            if ticket.epoch == s.epoch {
                s.error.get_or_insert(e);
            }
        }
        self.done.notify_all();
    }

    /// Wait until no write is in flight; the first error of any of them (reported once).
    pub fn settle(&self) -> Result<(), StorageError> {
        let mut s = self.state();
        while s.count > 0 {
            s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        match take_error(&mut s) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn take_error(s: &mut State) -> Option<StorageError> {
    let e = s.error.take();
    if e.is_some() {
        s.epoch += 1;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(key: &str) -> Result<(), StorageError> {
        Err(StorageError::Backend {
            key: key.into(),
            message: "disk full".into(),
        })
    }

    #[test]
    fn the_first_error_is_reported_once_and_earlier_writes_failing_too_are_not_reported_again() {
        let w = WriteBehind::default();
        let a = w.begin(4).unwrap();
        let b = w.begin(4).unwrap();
        w.finish(a, failed("a"));
        // The next write hears of it (once) and is not started.
        assert!(matches!(w.begin(4), Err(StorageError::Backend { key, .. }) if key == "a"));
        // b was queued by the operation that failed: its failure is not the next one's.
        w.finish(b, failed("b"));
        assert!(w.settle().is_ok());
        let c = w.begin(4).unwrap();
        w.finish(c, failed("c"));
        assert!(matches!(w.settle(), Err(StorageError::Backend { key, .. }) if key == "c"));
        assert!(w.settle().is_ok());
    }

    #[test]
    fn begin_waits_for_a_slot_and_settle_for_every_write() {
        let w = std::sync::Arc::new(WriteBehind::default());
        let first = w.begin(1).unwrap();
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            w2.finish(first, Ok(()));
        });
        let second = w.begin(1).unwrap(); // waits for the first to finish
        w.finish(second, Ok(()));
        w.settle().unwrap();
        t.join().unwrap();
    }
}
