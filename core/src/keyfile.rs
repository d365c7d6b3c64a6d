//! Key files in storage: where they live, how the first and later ones are written, and how
//! a passphrase unlocks the master key (the key-file format itself is in [`crate::crypto`]).
//!
//! Used by `init` and `open` ([`crate::repo`]) and by the key operations
//! ([`crate::ops::keys`]); no operation writes a key file any other way.

use std::collections::BTreeMap;

use crate::crypto::{KdfParams, KeyFile, RandomSource, MAX_KEY_FILE_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
pub use crate::layout::{KEYS_PREFIX, KEY_COPY_PREFIX};
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

/// Wrap `master` under `new.passphrase` and store it as a new key file (and, with
/// `copies`, its copy under `copies/keys/`); returns its storage key.
///
/// # Errors
/// [`Error::InvalidArgument`] for KDF costs the key-file format refuses; [`Error::Storage`].
pub fn write_key_file(
    storage: &dyn Storage,
    master: &[u8; 32],
    repo_id: &Id,
    new: &NewKey<'_>,
    rng: &mut dyn RandomSource,
    copies: bool,
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
    if copies {
        storage.put(&key_copy_key(&key), &json)?;
    }
    Ok(key)
}

/// The storage key of a key file's copy: `keys/<id>.key` → `copies/keys/<id>.key`.
pub fn key_copy_key(key: &str) -> String {
    format!("{KEY_COPY_PREFIX}{}", key.trim_start_matches(KEYS_PREFIX))
}

/// Remove a key file and its copy (the copy first: a copy without its key file only ever
/// means a lost key file).
///
/// # Errors
/// [`Error::Storage`].
pub fn delete_key_file(storage: &dyn Storage, key: &str) -> Result<()> {
    for k in [key_copy_key(key), key.to_string()] {
        match storage.delete(&k) {
            // Already gone (a lost file, or its copy): removed all the same.
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One stored version of a key file (the file, or its copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// Not there.
    Missing,
    /// There, but not the key file of its name (why).
    Damaged(String),
    /// There and hashing to its name (its bytes).
    Intact(Vec<u8>),
    /// In an archive storage class: not readable until restored from the archive.
    Archived(StorageError),
}

/// A key file by its storage key (`keys/<id>.key`), with its two versions.
#[derive(Debug, Clone)]
pub struct KeyVersions {
    /// `keys/<id>.key`.
    pub key: String,
    /// The file itself.
    pub file: Version,
    /// Its copy under `copies/keys/` (always [`Version::Missing`] without metadata copies).
    pub copy: Version,
}

impl Version {
    /// In words, for a message naming the file: "missing", why it is damaged or unreadable.
    pub fn describe(&self) -> String {
        match self {
            Version::Missing => "missing".to_string(),
            Version::Damaged(why) => why.clone(),
            Version::Intact(_) => "intact".to_string(),
            Version::Archived(e) => e.to_string(),
        }
    }

    /// Whether it is not there.
    pub fn is_missing(&self) -> bool {
        matches!(self, Version::Missing)
    }
}

impl KeyVersions {
    /// The bytes of the first intact version (the file, then the copy).
    pub fn intact(&self) -> Option<&[u8]> {
        match (&self.file, &self.copy) {
            (Version::Intact(d), _) | (_, Version::Intact(d)) => Some(d),
            _ => None,
        }
    }
}

/// Every key file named under `keys/` (and, with `copies`, under `copies/keys/`: a key file
/// lost while its copy is not is one too), in name order, each version read and checked
/// against its name (a key file is named by the SHA-256 of its bytes).
///
/// # Errors
/// [`Error::Storage`] for a listing or read that fails (an object in an archive class too).
pub fn key_versions(storage: &dyn Storage, copies: bool) -> Result<Vec<KeyVersions>> {
    let mut sizes: BTreeMap<String, (Option<u64>, Option<u64>)> = BTreeMap::new();
    for (key, size) in storage.list(KEYS_PREFIX)? {
        if key.ends_with(".key") && !key[KEYS_PREFIX.len()..].contains('/') {
            sizes.entry(key).or_default().0 = Some(size);
        }
    }
    if copies {
        for (copy, size) in storage.list(KEY_COPY_PREFIX)? {
            if copy.ends_with(".key") && !copy[KEY_COPY_PREFIX.len()..].contains('/') {
                let key = format!("{KEYS_PREFIX}{}", &copy[KEY_COPY_PREFIX.len()..]);
                sizes.entry(key).or_default().1 = Some(size);
            }
        }
    }
    let read = |key: &str, size: Option<u64>| -> Result<Version> {
        let Some(size) = size else {
            return Ok(Version::Missing);
        };
        if size > MAX_KEY_FILE_LEN as u64 {
            return Ok(Version::Damaged(format!(
                "{size} bytes, too large for a key file"
            )));
        }
        let data = match storage.get(key) {
            Ok(d) => d,
            Err(StorageError::NotFound(_)) => return Ok(Version::Missing),
            Err(e @ StorageError::Archived { .. }) => return Ok(Version::Archived(e)),
            // One file that cannot be read (an I/O error, a directory in its place) costs that
            // file, not the repository: the other version, or the other key files, still serve.
            Err(e) => return Ok(Version::Damaged(format!("unreadable: {e}"))),
        };
        let named = crate::layout::classify(key).and_then(|(_, id)| id);
        Ok(match named {
            Some(id) if Id::sha256(&data) != id => Version::Damaged(
                "damaged: its content does not hash to its name (a changed, truncated or \
                 replaced file)"
                    .into(),
            ),
            _ => Version::Intact(data),
        })
    };
    let mut out = Vec::new();
    for (key, (file, copy)) in sizes {
        let copy_key = key_copy_key(&key);
        out.push(KeyVersions {
            file: read(&key, file)?,
            copy: read(&copy_key, copy)?,
            key,
        });
    }
    Ok(out)
}

/// Every key file that parses (from its first intact version), with its storage key, in
/// name order.
///
/// # Errors
/// [`Error::Storage`] when listing or reading fails.
pub fn read_key_files(storage: &dyn Storage, copies: bool) -> Result<Vec<(String, KeyFile)>> {
    Ok(key_versions(storage, copies)?
        .into_iter()
        .filter_map(|v| {
            let kf = KeyFile::parse(v.intact()?).ok()?;
            Some((v.key, kf))
        })
        .collect())
}

/// Unwrap the master key with `pass`, trying every key file in name order (each from its
/// first intact version: the file, or with `copies` its copy); returns the master key and the
/// key file that opened it.
///
/// # Errors
/// [`Error::WrongPassphrase`] when key files exist, all intact, and none opens with `pass`;
/// [`Error::Corruption`] naming `keys/` and each damaged key file when none opens and one is
/// damaged (it may have been this passphrase's), or there is no key file;
/// [`Error::Storage`] (`Archived`) when none opened and one is in an archive class.
pub fn unlock_master(
    storage: &dyn Storage,
    repo_id: &Id,
    pass: &[u8],
    copies: bool,
) -> Result<([u8; 32], String)> {
    let versions = key_versions(storage, copies)?;
    let mut malformed = Vec::new();
    let mut tried = Vec::new();
    let mut archived = None;
    for v in &versions {
        let Some(data) = v.intact() else {
            for x in [&v.file, &v.copy] {
                if let Version::Archived(e) = x {
                    archived.get_or_insert_with(|| e.clone());
                }
            }
            malformed.push(if copies {
                format!(
                    "{}: {}; its copy: {}",
                    v.key,
                    v.file.describe(),
                    v.copy.describe()
                )
            } else {
                format!("{}: {}", v.key, v.file.describe())
            });
            continue;
        };
        match KeyFile::parse(data).and_then(|kf| kf.unwrap_master(repo_id, pass)) {
            Ok(Some(master)) => return Ok((master, v.key.clone())),
            Ok(None) => tried.push(v.key.as_str()),
            Err(e) => malformed.push(format!("{}: {e}", v.key)),
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
    if !malformed.is_empty() {
        // Damage is certain; the passphrase may be the damaged key file's: say both.
        return Err(Error::corruption(
            KEYS_PREFIX,
            format!(
                "key file(s) damaged: {}; the passphrase opens none of the intact ones ({}). If \
                 the passphrase is right, it was a damaged file's: restore that file from a \
                 backup of the repository, or open with another key's passphrase",
                malformed.join("; "),
                tried.join(", ")
            ),
        ));
    }
    Err(Error::WrongPassphrase(format!(
        "wrong passphrase for the repository at {}: none of its {} key file(s) opens with it ({})",
        storage.location(),
        tried.len(),
        tried.join(", "),
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
