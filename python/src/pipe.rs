//! Overlapping I/O with the engine: a reader thread fills the next input block while the
//! engine chunks, hashes, compresses and encrypts the current one; a writer thread writes a
//! restored batch while the engine decodes the next. Two blocks in flight bound the memory.

use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes per input block.
const BLOCK: usize = 4 << 20;

/// Read `src` to its end in a helper thread and hand each block to `consume`, in order.
/// Returns the bytes read; the first error (from reading or from `consume`) wins.
pub fn feed<R, E>(
    mut src: R,
    read_error: impl Fn(std::io::Error) -> E + Send + Sync,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E>
where
    R: Read + Send,
    E: Send,
{
    let (full_tx, full_rx): (SyncSender<std::io::Result<Vec<u8>>>, Receiver<_>) = sync_channel(1);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        empty_tx
            .send(vec![0u8; BLOCK])
            .expect("room for two buffers");
    }
    std::thread::scope(|s| {
        let reader = std::thread::Builder::new().name("ca-read".into());
        let spawned = reader.spawn_scoped(s, move || {
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
        });
        spawned.map_err(&read_error)?;
        let mut total = 0u64;
        while let Ok(block) = full_rx.recv() {
            let block = block.map_err(&read_error)?;
            if block.is_empty() {
                break;
            }
            consume(&block)?;
            total += block.len() as u64;
            let done = block.len() < BLOCK;
            // A closed channel means the reader finished; dropping the buffer is fine then.
            let _ = empty_tx.send(block);
            if done {
                break;
            }
        }
        // Unblock a reader waiting for a buffer after an error.
        drop(empty_tx);
        Ok(total)
    })
}

/// Produce batches with `next` and write them to `dst` in a helper thread, in order.
pub fn drain<W, E>(
    mut dst: W,
    write_error: impl Fn(std::io::Error) -> E + Send + Sync,
    mut next: impl FnMut() -> Result<Option<Vec<Vec<u8>>>, E>,
) -> Result<(u64, W), E>
where
    W: Write + Send,
    E: Send,
{
    let (tx, rx) = sync_channel::<Vec<Vec<u8>>>(1);
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new().name("ca-write".into());
        let writer = writer.spawn_scoped(s, move || -> std::io::Result<(u64, W)> {
            let mut total = 0u64;
            for batch in rx {
                for chunk in batch {
                    dst.write_all(&chunk)?;
                    total += chunk.len() as u64;
                }
            }
            dst.flush()?;
            Ok((total, dst))
        });
        let writer = writer.map_err(&write_error)?;
        let produced = loop {
            match next() {
                Ok(Some(batch)) => {
                    if tx.send(batch).is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(tx);
        let written = writer.join().expect("the writer thread does not panic");
        produced?;
        written.map_err(&write_error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_and_drain_keep_every_byte_in_order() {
        let data: Vec<u8> = (0..(3 * BLOCK + 12345)).map(|i| (i % 251) as u8).collect();
        let mut got = Vec::new();
        let n = feed(
            &data[..],
            |e| e.to_string(),
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
        let (written, out) = drain(Vec::new(), |e| e.to_string(), || Ok(batches.next())).unwrap();
        assert_eq!(written as usize, data.len());
        assert_eq!(out, data);
        let empty = feed(&[][..], |e| e.to_string(), |_| Ok(())).unwrap();
        assert_eq!(empty, 0);
    }
}
