//! Key files of an encrypted repository: list, add, change passphrase, remove.
//!
//! Every key file wraps the same master key, so adding or removing one never touches data.
//! Removing the last key file (or the one in use) is refused: it would lock everyone out.

use serde::Serialize;

use crate::crypto::{KdfParams, KeyFile, RandomSource};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{key_file_key, Repository, KEYS_PREFIX};
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
    fn key_files(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut out = Vec::new();
        let mut listed = self.storage().list(KEYS_PREFIX)?;
        listed.sort();
        for (key, _) in listed {
            let data = self.storage().get(&key)?;
            if let Ok(kf) = KeyFile::parse(&data) {
                out.push((key, kf));
            }
        }
        Ok(out)
    }

    /// Every readable key file.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.master_key()?;
        let current = self.current_key();
        Ok(self
            .key_files()?
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
        let kf = KeyFile::create(
            &master,
            &repo_id,
            passphrase,
            kdf,
            created_at.into(),
            comment.into(),
            rng,
        )
        .map_err(Error::InvalidArgument)?;
        let json = serde_json::to_vec_pretty(&kf).expect("key file serializes");
        let key = key_file_key(&Id::sha256(&json));
        self.storage().put(&key, &json)?;
        Ok(id_of(&key))
    }

    /// Remove the key file `id` (or a unique prefix of it). The last key file and the one this
    /// repository was opened with cannot be removed.
    pub fn remove_key(&self, id: &str) -> Result<()> {
        self.master_key()?;
        let files = self.key_files()?;
        let matches: Vec<&String> = files
            .iter()
            .map(|(k, _)| k)
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
        if files.len() <= 1 {
            return Err(Error::InvalidArgument(format!("key {} is the last key of the repository: removing it would make the data unreadable forever", id_of(&key))));
        }
        if self.current_key().as_deref() == Some(key.as_str()) {
            return Err(Error::InvalidArgument(format!("key {} is the one this repository was opened with: open the repository with another key's passphrase to remove this one, or give this key a new passphrase instead", id_of(&key))));
        }
        self.storage().delete(&key)?;
        Ok(())
    }

    /// Replace the key file in use by a new one with `new_passphrase`; returns the new key id.
    /// The new key file is stored before the old one is removed.
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
            self.storage().delete(&old)?;
        }
        Ok(id)
    }
}

/// Refuse a passphrase being chosen (init, key add, key passwd) that is empty or only blanks:
/// anyone could open the repository with it. Opening with the passphrase a repository already
/// has is not checked, so one made with such a passphrase can be opened to change it.
/// Errors: [`Error::InvalidArgument`].
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

fn id_of(key: &str) -> String {
    key.trim_start_matches(KEYS_PREFIX)
        .trim_end_matches(".key")
        .to_string()
}
