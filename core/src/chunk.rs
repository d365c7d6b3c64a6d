//! Content-defined chunking of a stream fed in pieces.
//!
//! FastCDC decides each cut from the bytes since the previous cut only, so cutting a buffer,
//! keeping back the last (possibly unfinished) chunk and cutting again once more bytes arrived
//! gives exactly the boundaries of one pass over the whole stream.

use fastcdc::v2020::FastCDC;

use crate::config::ChunkerConfig;

/// Streaming chunker state: the bytes not yet cut.
#[derive(Debug)]
pub struct Chunker {
    params: ChunkerConfig,
    buf: Vec<u8>,
}

impl Chunker {
    /// A chunker with no pending bytes.
    pub fn new(params: ChunkerConfig) -> Self {
        Chunker {
            params,
            buf: Vec::new(),
        }
    }

    /// Bytes waiting to be cut.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Add bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Cut the pending bytes and take every finished chunk out as a [`Batch`] that owns its
    /// bytes, so that it can be processed while the next bytes are cut; the rest stays pending.
    /// With `eof` the stream ended, so the tail is a chunk too. `spare` is a buffer to reuse
    /// (its content is discarded): the rest moves into it, and the batch keeps the old buffer.
    /// `None` when no chunk is finished yet.
    pub fn cut_off(&mut self, eof: bool, mut spare: Vec<u8>) -> Option<Batch> {
        let p = &self.params;
        let mut spans: Vec<(usize, usize)> = FastCDC::new(
            &self.buf,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
        )
        .map(|c| (c.offset, c.length))
        .collect();
        if !eof {
            spans.pop();
        }
        let consumed = spans.last().map_or(0, |(o, l)| o + l);
        if consumed == 0 {
            return None;
        }
        spare.clear();
        spare.extend_from_slice(&self.buf[consumed..]);
        let mut buf = std::mem::replace(&mut self.buf, spare);
        buf.truncate(consumed);
        Some(Batch { buf, spans })
    }
}

/// Consecutive chunks of a stream, with their bytes ([`Chunker::cut_off`]).
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Batch {
    /// The chunks, in stream order.
    pub fn chunks(&self) -> Vec<&[u8]> {
        self.spans
            .iter()
            .map(|&(o, l)| &self.buf[o..o + l])
            .collect()
    }

    /// The buffer, for the chunker to reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 88172645463325252u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn chunk_in_pieces(input: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(ChunkerConfig::default());
        let mut out = Vec::new();
        for p in input.chunks(piece) {
            c.push(p);
            if c.pending() > 4 << 20 {
                let b = c.cut_off(false, Vec::new()).expect("chunks finished");
                out.extend(b.chunks().iter().map(|c| c.to_vec()));
            }
        }
        if let Some(b) = c.cut_off(true, Vec::new()) {
            out.extend(b.chunks().iter().map(|c| c.to_vec()));
        }
        out
    }

    #[test]
    fn boundaries_do_not_depend_on_how_the_stream_is_fed() {
        let input = data(20 << 20);
        let whole = chunk_in_pieces(&input, input.len());
        assert!(whole.len() > 40, "{} chunks", whole.len());
        for piece in [1 << 20, 65_537, 3_000_001] {
            assert_eq!(chunk_in_pieces(&input, piece), whole, "piece size {piece}");
        }
        assert_eq!(whole.concat(), input);
        assert!(whole[..whole.len() - 1]
            .iter()
            .all(|c| (64 << 10..=1 << 20).contains(&c.len())));
    }

    #[test]
    fn empty_and_tiny_streams() {
        assert!(chunk_in_pieces(&[], 10).is_empty());
        assert_eq!(chunk_in_pieces(b"x", 10), vec![b"x".to_vec()]);
    }
}
