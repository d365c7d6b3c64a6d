//! Key operations of an encrypted repository: list, add, change passphrase, remove
//! (`containerarchive key …`). Key-file storage and unlocking are in [`crate::keyfile`].
//!
//! Every key file wraps the same master key, so adding or removing one never touches data.
//! Removing the last key file (or the one in use) is refused: it would lock everyone out.

use serde::Serialize;

use crate::crypto::{KdfParams, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::keyfile::{
    check_new_passphrase, delete_key_file, key_file_key, key_id_of as id_of, read_key_files,
    write_key_file, NewKey,
};
use crate::repo::Repository;
use crate::storage::Storage;

/// A key file as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Key id (SHA-256 of the key file, 64 hex).
    pub id: String,
    /// When it was made.
    pub created_at: String,
    /// Who made it (user@host).
    pub comment: String,
    /// Its Argon2id costs.
    pub kdf: KdfParams,
    /// Whether this repository was opened with it.
    pub current: bool,
}

impl<S: Storage> Repository<S> {
    /// Every readable key file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unencrypted repository; [`Error::Storage`].
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.master_key()?;
        let current = self.current_key();
        Ok(read_key_files(self.storage(), self.copies())?
            .into_iter()
            .map(|(key, kf)| KeyInfo {
                id: id_of(&key),
                created_at: kf.created_at,
                comment: kf.comment,
                kdf: kf.kdf_params,
                current: current.as_deref() == Some(key.as_str()),
            })
            .collect())
    }

    /// Add a key file that opens the repository with `passphrase`; returns its id.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unencrypted repository, an empty passphrase or invalid KDF
    /// costs; [`Error::Storage`].
    pub fn add_key(
        &self,
        passphrase: &[u8],
        kdf: KdfParams,
        created_at: &str,
        comment: &str,
        rng: &mut dyn RandomSource,
    ) -> Result<String> {
        let master = self.master_key()?;
        check_new_passphrase(passphrase)?;
        let repo_id = Id::from_hex(&self.config().id).expect("validated at open");
        let new = NewKey {
            passphrase,
            kdf,
            created_at,
            comment,
        };
        let key = write_key_file(self.storage(), &master, &repo_id, &new, rng, self.copies())?;
        Ok(id_of(&key))
    }

    /// Remove the key file `id` (or a unique prefix of it). The last key file and the one this
    /// repository was opened with cannot be removed.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`]; [`Error::InvalidArgument`] for an ambiguous prefix, the last key or
    /// the one in use; [`Error::Storage`].
    pub fn remove_key(&self, id: &str) -> Result<()> {
        self.master_key()?;
        let files = read_key_files(self.storage(), self.copies())?;
        // A key file whose every version is damaged (repair reports it lost) can be removed
        // too: it opens nothing any more.
        let all: Vec<String> = crate::keyfile::key_versions(self.storage(), self.copies())?
            .into_iter()
            .map(|v| v.key)
            .collect();
        let matches: Vec<&String> = all
            .iter()
            .filter(|k| id_of(k).starts_with(&id.to_ascii_lowercase()) && !id.is_empty())
            .collect();
        let key = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(Error::KeyNotFound(id.to_string())),
            many => {
                return Err(Error::InvalidArgument(format!(
                    "key id prefix {id} is ambiguous: {}",
                    many.iter().map(|k| id_of(k)).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let readable = files.iter().any(|(k, _)| *k == key);
        if readable && files.len() <= 1 {
            return Err(Error::InvalidArgument(format!("key {} is the last key of the repository: removing it would make the data unreadable forever", id_of(&key))));
        }
        if self.current_key().as_deref() == Some(key.as_str()) {
            return Err(Error::InvalidArgument(format!("key {} is the one this repository was opened with: open the repository with another key's passphrase to remove this one, or give this key a new passphrase instead", id_of(&key))));
        }
        delete_key_file(self.storage(), &key)
    }

    /// Replace the key file in use by a new one with `new_passphrase`; returns the new key id.
    /// The new key file is stored before the old one is removed.
    ///
    /// # Errors
    /// As [`Repository::add_key`].
    pub fn change_passphrase(
        &self,
        new_passphrase: &[u8],
        kdf: KdfParams,
        created_at: &str,
        comment: &str,
        rng: &mut dyn RandomSource,
    ) -> Result<String> {
        let old = self.current_key();
        let id = self.add_key(new_passphrase, kdf, created_at, comment, rng)?;
        self.set_current_key(Some(key_file_key(&Id::from_hex(&id).expect("hex id"))));
        if let Some(old) = old {
            delete_key_file(self.storage(), &old)?;
        }
        Ok(id)
    }
}
