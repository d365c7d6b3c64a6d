//! The blob codec: how one chunk (or chunk list) is stored inside a pack, and back.
//!
//! Encoding compresses the plaintext with the repository's compression (stored as is when it
//! does not shrink) and, in an encrypted repository, seals it with AES-256-GCM under the label
//! `"ca blob" ‖ chunk id`, so a blob cannot be moved to another id without failing to open.
//! Decoding reverses this and checks the plaintext against its id (docs/FORMAT.md, "Chunks and blobs").
//! Ingest, restore, verify, prune, repair and restore plans all read blobs through here.
//!
//! A chunk-list blob is the concatenation of 32-byte chunk ids of one item, in order.

use std::borrow::Cow;

use crate::compress::{compress, decompress, Compression};
use crate::config::CompressionConfig;
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{Id, ID_LEN};
use crate::index::Location;

/// The authenticated-data label of a blob: binds its ciphertext to its id.
fn blob_label(id: &Id) -> [u8; 7 + ID_LEN] {
    let mut l = [0u8; 7 + ID_LEN];
    l[..7].copy_from_slice(b"ca blob");
    l[7..].copy_from_slice(&id.0);
    l
}

/// Compress and seal one blob; returns the stored bytes and the compression used.
pub fn encode_blob(
    keys: &Keys,
    cfg: CompressionConfig,
    id: &Id,
    data: &[u8],
    nonce: [u8; NONCE_LEN],
) -> (Vec<u8>, Compression) {
    let (body, used): (Cow<'_, [u8]>, _) = match compress(cfg.algorithm, cfg.level, data) {
        Some(c) => (Cow::Owned(c), cfg.algorithm),
        None => (Cow::Borrowed(data), Compression::None),
    };
    if keys.encrypted() {
        (keys.seal(&blob_label(id), &body, nonce), used)
    } else {
        (body.into_owned(), used)
    }
}

/// Seal a delta `frame` ([`crate::delta::encode_delta`]) as the stored bytes of chunk `id`:
/// the frame is the body (compressed already), sealed as any blob.
pub fn encode_delta_blob(keys: &Keys, id: &Id, frame: Vec<u8>, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    if keys.encrypted() {
        keys.seal(&blob_label(id), &frame, nonce)
    } else {
        frame
    }
}

/// Open, decompress and check one stored blob against its id. A delta blob needs its prefix,
/// `base`: its base chunks' plaintexts concatenated in order ([`crate::pack::Bases::prefix`];
/// ignored for a full blob).
///
/// # Errors
/// [`Error::Corruption`] naming the chunk and pack when the blob does not open, decompress to
/// its recorded length, or hash to its id (a delta also when its base is not given).
pub fn decode_blob(
    keys: &Keys,
    loc: &Location,
    stored: &[u8],
    base: Option<&[u8]>,
) -> Result<Vec<u8>> {
    decode_blob_with(keys, loc, stored, true, base)
}

/// Open and decompress one stored blob for reading. In an encrypted repository the AEAD tag
/// binds the chunk id (it is the seal label), so a blob that opens is the one a key holder
/// stored for that id and recomputing the HMAC (a third of a restore's CPU time) adds nothing;
/// without encryption the id is the only check and is always recomputed. A delta's output is
/// always checked against its id: it depends on the base too, which its seal does not bind.
/// `verify --level full` recomputes every id either way.
///
/// # Errors
/// As [`decode_blob`].
pub fn read_blob(
    keys: &Keys,
    loc: &Location,
    stored: &[u8],
    base: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let check = !keys.encrypted() || loc.entry.compression == Compression::ZstdDelta;
    decode_blob_with(keys, loc, stored, check, base)
}

/// Open and decompress a blob whose plaintext only serves to decode deltas and is never
/// handed out: no id is recomputed (in a repository without encryption nothing checks it).
/// Sound because every delta decoded from it is checked against its own id ([`read_blob`]),
/// which a wrong base fails unless the delta uses none of the wrong bytes, and then its
/// output is right. On a chain of nightly versions this saves all but one of the SHA-256
/// passes a chunk's restore made (one per blob of its closure).
///
/// # Errors
/// As [`decode_blob`], except that the id is not checked.
pub fn decode_intermediate_base(
    keys: &Keys,
    loc: &Location,
    stored: &[u8],
    base: Option<&[u8]>,
) -> Result<Vec<u8>> {
    decode_blob_with(keys, loc, stored, false, base)
}

fn decode_blob_with(
    keys: &Keys,
    loc: &Location,
    stored: &[u8],
    check_id: bool,
    base: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let e = &loc.entry;
    let bad =
        |reason: String| Error::corruption(format!("chunk {} in pack {}", e.id, loc.pack), reason);
    let body: Cow<'_, [u8]> = if keys.encrypted() {
        let opened = keys.open(&blob_label(&e.id), stored);
        Cow::Owned(opened.map_err(|r| bad(r.into()))?)
    } else {
        Cow::Borrowed(stored)
    };
    let plain = match e.compression {
        Compression::None if body.len() == e.raw_len as usize => {
            // Stored as is: the opened plaintext is the chunk (no second copy).
            body.into_owned()
        }
        Compression::ZstdDelta => {
            let base = base.ok_or_else(|| {
                bad(format!(
                    "a delta against chunk {}, which was not given",
                    e.bases().map_or("(none named)".into(), |b| b
                        .ids()
                        .map(|id| id.to_hex())
                        .collect::<Vec<_>>()
                        .join(" and "))
                ))
            })?;
            crate::delta::decode_delta(base, &body, e.raw_len as usize).map_err(bad)?
        }
        c => decompress(c, &body, e.raw_len as usize).map_err(bad)?,
    };
    if check_id && keys.chunk_id(&plain) != e.id {
        return Err(bad(match e.bases() {
            // The bases it was decoded against are not checked when only a base
            // (`decode_intermediate_base`): the damage may be in one of them.
            Some(b) => format!(
                "content does not hash to the chunk id (this delta or its base chunk {} is \
                 damaged: verify --level full checks each)",
                b.ids()
                    .map(|id| id.to_hex())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            None => "content does not hash to the chunk id".into(),
        }));
    }
    Ok(plain)
}

/// The bytes of a chunk-list blob naming `ids` in order.
pub fn encode_chunk_list(ids: impl IntoIterator<Item = Id>) -> Vec<u8> {
    ids.into_iter().flat_map(|id| id.0).collect()
}

/// The chunk ids of a decoded chunk-list blob, in order.
///
/// # Errors
/// The reason, when the length is not a multiple of 32 bytes (the caller names the list).
pub fn decode_chunk_list(raw: &[u8]) -> std::result::Result<Vec<Id>, &'static str> {
    if !raw.len().is_multiple_of(ID_LEN) {
        return Err("length is not a multiple of 32");
    }
    Ok(raw
        .chunks_exact(ID_LEN)
        .map(|c| Id::from_slice(c).expect("32 bytes"))
        .collect())
}
