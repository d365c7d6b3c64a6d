//! Overlapping I/O with the engine: a reader thread fills the next input block while the
//! engine chunks, hashes, compresses and encrypts the current one; a writer thread writes a
//! restored batch while the engine decodes the next. Two blocks in flight bound the memory.

use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// Bytes per input block.
const BLOCK: usize = 4 << 20;

/// How long a wait for the other thread lasts before signals are checked again.
const POLL: Duration = Duration::from_millis(100);

/// Read `src` to its end in a helper thread and hand each block to `consume`, in order.
/// Returns the bytes read; the first error (from reading, `consume` or `interrupted`) wins.
/// While the source is silent (a producer that writes nothing for minutes), `interrupted` is
/// asked every 100 ms whether to give up (a signal arrived): the operation stops at once. The
/// reader thread is then left blocked in its read, owning `src`, until the source ends (the
/// producer killed) or the process exits.
pub fn feed<R, E>(
    mut src: R,
    read_error: impl Fn(std::io::Error) -> E + Send + Sync,
    interrupted: impl Fn() -> Result<(), E>,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E>
where
    R: Read + Send + 'static,
    E: Send,
{
    let (full_tx, full_rx): (SyncSender<std::io::Result<Vec<u8>>>, Receiver<_>) = sync_channel(1);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        empty_tx
            .send(vec![0u8; BLOCK])
            .expect("room for two buffers");
    }
    let reader = std::thread::Builder::new().name("ca-read".into());
    reader
        .spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(BLOCK, 0);
                let mut filled = 0;
                let result = loop {
                    match src.read(&mut buf[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == BLOCK {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(filled);
                let last = filled < BLOCK || result.is_err();
                let sent = full_tx.send(result.map(|_| buf));
                if last || sent.is_err() {
                    return;
                }
            }
        })
        .map_err(&read_error)?;
    let mut total = 0u64;
    loop {
        let block = match full_rx.recv_timeout(POLL) {
            Ok(block) => block,
            Err(RecvTimeoutError::Timeout) => {
                interrupted()?;
                continue;
            }
            // The reader ended without sending the end of the stream (it panicked): an item
            // must never be committed truncated.
            Err(RecvTimeoutError::Disconnected) => {
                return Err(read_error(std::io::Error::other(
                    "the reading thread stopped before the end of the stream",
                )))
            }
        };
        let block = block.map_err(&read_error)?;
        if block.is_empty() {
            break;
        }
        consume(&block)?;
        interrupted()?;
        total += block.len() as u64;
        let done = block.len() < BLOCK;
        // A closed channel means the reader finished; dropping the buffer is fine then.
        let _ = empty_tx.send(block);
        if done {
            break;
        }
    }
    Ok(total)
}

/// Produce batches with `next` and write them to `dst` in a helper thread, in order. While the
/// destination does not take data (a slow or stopped consumer), `interrupted` is asked every
/// 100 ms whether to give up; the writer thread is then left to the process's exit.
pub fn drain<W, E>(
    mut dst: W,
    write_error: impl Fn(std::io::Error) -> E + Send + Sync,
    interrupted: impl Fn() -> Result<(), E>,
    mut next: impl FnMut() -> Result<Option<Vec<Vec<u8>>>, E>,
) -> Result<(u64, W), E>
where
    W: Write + Send + 'static,
    E: Send,
{
    let (tx, rx) = sync_channel::<Vec<Vec<u8>>>(1);
    let (done_tx, done_rx) = sync_channel::<std::io::Result<(u64, W)>>(1);
    let writer = std::thread::Builder::new().name("ca-write".into());
    writer
        .spawn(move || {
            let result = (|| {
                let mut total = 0u64;
                for batch in rx {
                    for chunk in batch {
                        dst.write_all(&chunk)?;
                        total += chunk.len() as u64;
                    }
                }
                dst.flush()?;
                Ok((total, dst))
            })();
            let _ = done_tx.send(result);
        })
        .map_err(&write_error)?;
    let mut checked = std::time::Instant::now();
    let produced = 'produce: loop {
        match next() {
            Ok(Some(mut batch)) => loop {
                match tx.try_send(batch) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        batch = back;
                        if checked.elapsed() >= POLL {
                            checked = std::time::Instant::now();
                            if let Err(e) = interrupted() {
                                break 'produce Err(e);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(TrySendError::Disconnected(_)) => break 'produce Ok(()),
                }
            },
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    drop(tx);
    produced?;
    loop {
        match done_rx.recv_timeout(POLL) {
            Ok(written) => return written.map_err(&write_error),
            Err(RecvTimeoutError::Timeout) => interrupted()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(write_error(std::io::Error::other(
                    "the writer thread stopped",
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_and_drain_keep_every_byte_in_order() {
        let data: Vec<u8> = (0..(3 * BLOCK + 12345)).map(|i| (i % 251) as u8).collect();
        let mut got = Vec::new();
        let n = feed(
            std::io::Cursor::new(data.clone()),
            |e| e.to_string(),
            || Ok(()),
            |b| {
                got.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(got, data);
        let mut batches = data
            .chunks(1 << 20)
            .map(|c| vec![c.to_vec()])
            .collect::<Vec<_>>()
            .into_iter();
        let (written, out) = drain(
            Vec::new(),
            |e| e.to_string(),
            || Ok(()),
            || Ok(batches.next()),
        )
        .unwrap();
        assert_eq!(written as usize, data.len());
        assert_eq!(out, data);
        let empty = feed(std::io::empty(), |e| e.to_string(), || Ok(()), |_| Ok(())).unwrap();
        assert_eq!(empty, 0);
    }
}
