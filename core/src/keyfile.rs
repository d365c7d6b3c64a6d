//! Key files in storage: where they live, how the first and later ones are written, and how
//! a passphrase unlocks the master key (the key-file format itself is in [`crate::crypto`]).
//!
//! Used by `init` and `open` ([`crate::repo`]) and by the key operations
//! ([`crate::ops::keys`]); no operation writes a key file any other way.

use crate::crypto::{KdfParams, KeyFile, RandomSource, MAX_KEY_FILE_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
pub use crate::layout::KEYS_PREFIX;
use crate::storage::{Storage, StorageError};

/// The storage key of the key file whose content hashes to `id`: `keys/<id>.key`.
pub fn key_file_key(id: &Id) -> String {
    format!("{KEYS_PREFIX}{}.key", id.to_hex())
}

/// The key id (64 hex) in a key file's storage key.
pub fn key_id_of(key: &str) -> String {
    key.trim_start_matches(KEYS_PREFIX)
        .trim_end_matches(".key")
        .to_string()
}

/// What a new key file is made of, besides the master key it wraps.
pub struct NewKey<'a> {
    /// The passphrase that will open it (checked by [`check_new_passphrase`]).
    pub passphrase: &'a [u8],
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// When it is made (RFC 3339, from the caller's clock).
    pub created_at: &'a str,
    /// Who made it (user@host).
    pub comment: &'a str,
}

/// Wrap `master` under `new.passphrase` and store it as a new key file; returns its storage key.
///
/// # Errors
/// [`Error::InvalidArgument`] for KDF costs the key-file format refuses; [`Error::Storage`].
pub fn write_key_file(
    storage: &dyn Storage,
    master: &[u8; 32],
    repo_id: &Id,
    new: &NewKey<'_>,
    rng: &mut dyn RandomSource,
) -> Result<String> {
    let kf = KeyFile::create(
        master,
        repo_id,
        new.passphrase,
        new.kdf,
        new.created_at.into(),
        new.comment.into(),
        rng,
    )
    .map_err(Error::InvalidArgument)?;
    let json = serde_json::to_vec_pretty(&kf).expect("key file serializes");
    let key = key_file_key(&Id::sha256(&json));
    storage.put(&key, &json)?;
    Ok(key)
}

/// Every key file that parses, with its storage key, in name order.
///
/// # Errors
/// [`Error::Storage`] when listing or reading fails.
pub fn read_key_files(storage: &dyn Storage) -> Result<Vec<(String, KeyFile)>> {
    let mut out = Vec::new();
    let mut listed = storage.list(KEYS_PREFIX)?;
    listed.sort();
    for (key, _) in listed {
        let data = storage.get(&key)?;
        if let Ok(kf) = KeyFile::parse(&data) {
            out.push((key, kf));
        }
    }
    Ok(out)
}

/// Unwrap the master key with `pass`, trying every key file in name order; returns the master
/// key and the key file that opened it.
///
/// # Errors
/// [`Error::WrongPassphrase`] when readable key files exist but none opens with `pass`;
/// [`Error::Corruption`] naming `keys/` when there is no readable key file;
/// [`Error::Storage`] (`Archived`) when none opened and one is in an archive class.
pub fn unlock_master(
    storage: &dyn Storage,
    repo_id: &Id,
    pass: &[u8],
) -> Result<([u8; 32], String)> {
    let mut keys = storage.list(KEYS_PREFIX)?;
    keys.sort();
    let mut malformed = Vec::new();
    let mut tried = Vec::new();
    let mut archived = None;
    for (key, size) in &keys {
        if !key.ends_with(".key") {
            continue;
        }
        if *size > MAX_KEY_FILE_LEN as u64 {
            malformed.push(format!("{key}: {size} bytes, too large for a key file"));
            continue;
        }
        let data = match storage.get(key) {
            Err(e @ StorageError::Archived { .. }) => {
                archived.get_or_insert(e);
                continue;
            }
            other => other,
        };
        let parsed = data
            .map_err(|e| e.to_string())
            .and_then(|d| KeyFile::parse(&d))
            .and_then(|kf| kf.unwrap_master(repo_id, pass));
        match parsed {
            Ok(Some(master)) => return Ok((master, key.clone())),
            Ok(None) => tried.push(key.as_str()),
            Err(e) => malformed.push(format!("{key}: {e}")),
        }
    }
    // No key opened, and one could not be read because it is in an archive class: say that.
    if let Some(e) = archived {
        return Err(e.into());
    }
    if tried.is_empty() {
        return Err(Error::corruption(
            KEYS_PREFIX,
            if malformed.is_empty() {
                "no key file: the encrypted repository cannot be opened".to_string()
            } else {
                format!("no readable key file ({})", malformed.join("; "))
            },
        ));
    }
    Err(Error::WrongPassphrase(format!(
        "wrong passphrase for the repository at {}: none of its {} key file(s) opens with it ({}){}",
        storage.location(),
        tried.len(),
        tried.join(", "),
        if malformed.is_empty() {
            String::new()
        } else {
            format!("; unreadable: {}", malformed.join("; "))
        }
    )))
}

/// Refuse a passphrase being chosen (init, key add, key passwd) that is empty or only blanks:
/// anyone could open the repository with it. Opening with the passphrase a repository already
/// has is not checked, so one made with such a passphrase can be opened to change it.
///
/// # Errors
/// [`Error::InvalidArgument`].
pub fn check_new_passphrase(passphrase: &[u8]) -> Result<()> {
    if passphrase.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::InvalidArgument(
            "the new passphrase is empty (or only blanks): anyone could open the repository \
             with it; choose a passphrase, or make the repository unencrypted on purpose"
                .into(),
        ));
    }
    Ok(())
}
