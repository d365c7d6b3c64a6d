//! Keys, chunk addressing and sealing.
//!
//! A repository has one random 256-bit master key. Two subkeys are derived from it with
//! HKDF-SHA256 (salted with the repository id): one for AES-256-GCM, one for the HMAC-SHA256
//! that addresses chunks. The master key is stored only wrapped, under a key derived from a
//! passphrase with Argon2id, in key files under `keys/`.
//!
//! "Sealing" is how every metadata object is protected: in an encrypted repository it is
//! `nonce(12) ‖ AES-256-GCM(body, aad = label)`; in a plain one `body ‖ SHA-256(label ‖ body)`,
//! so damage is detected either way.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::Id;

/// Bytes of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes of a plain seal's checksum.
const CHECKSUM_LEN: usize = 32;

/// Randomness supplied by the caller: the core never reads OS entropy itself.
pub trait RandomSource {
    /// Fill `dest` with cryptographically secure random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// A fresh random 32-byte value.
pub fn random_bytes<const N: usize>(rng: &mut dyn RandomSource) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill(&mut out);
    out
}

/// The keys an open repository works with. `None` cipher means an unencrypted repository.
#[derive(Clone)]
pub struct Keys {
    cipher: Option<Aes256Gcm>,
    id_mac: Option<Hmac<Sha256>>,
    /// Keys resemblance features (`crate::delta`), so stored features say no more than ids.
    feature_mac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

impl Keys {
    /// Keys of an unencrypted repository: chunk IDs are plain SHA-256, seals are checksums.
    pub fn plain() -> Self {
        Keys {
            cipher: None,
            id_mac: None,
            feature_mac: None,
        }
    }

    /// Derive the working keys from the master key.
    pub fn from_master(master: &[u8; 32], repo_id: &Id) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(&repo_id.0), master);
        let mut enc = [0u8; 32];
        let mut mac = [0u8; 32];
        let mut features = [0u8; 32];
        for (info, out) in [
            (b"containerarchive v1 encryption".as_slice(), &mut enc),
            (b"containerarchive v1 chunk-id", &mut mac),
            (b"containerarchive v1 resemblance", &mut features),
        ] {
            hk.expand(info, out)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
        }
        let hmac = |key: &[u8; 32]| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
        };
        Keys {
            cipher: Some(Aes256Gcm::new((&enc).into())),
            id_mac: Some(hmac(&mac)),
            feature_mac: Some(hmac(&features)),
        }
    }

    /// Whether data is encrypted.
    pub fn encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The content address of a chunk: HMAC-SHA256 under the id key, or SHA-256 when plain.
    pub fn chunk_id(&self, data: &[u8]) -> Id {
        match &self.id_mac {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(data);
                Id(mac.finalize().into_bytes().into())
            }
            None => Id::sha256(data),
        }
    }

    /// A resemblance feature's 32-bit value for the bytes `group`: the first 4 bytes
    /// (little-endian) of HMAC-SHA256 under the resemblance key, or of SHA-256 when plain.
    pub fn feature_hash(&self, group: &[u8]) -> u32 {
        let digest: [u8; 32] = match &self.feature_mac {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(group);
                mac.finalize().into_bytes().into()
            }
            None => Id::sha256(group).0,
        };
        u32::from_le_bytes(digest[..4].try_into().expect("4 bytes"))
    }

    /// Bytes a seal adds to its body.
    pub fn seal_overhead(&self) -> usize {
        if self.encrypted() {
            NONCE_LEN + TAG_LEN
        } else {
            CHECKSUM_LEN
        }
    }

    /// Protect `body`; `label` binds it to its purpose so that one kind of object cannot be
    /// passed off as another. `nonce` must be fresh random bytes (unused when plain).
    pub fn seal(&self, label: &[u8], body: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        match &self.cipher {
            Some(cipher) => {
                let mut out = Vec::with_capacity(body.len() + NONCE_LEN + TAG_LEN);
                out.extend_from_slice(&nonce);
                let ct = cipher
                    .encrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: body,
                            aad: label,
                        },
                    )
                    .expect("AES-GCM encrypts any message shorter than 64 GiB");
                out.extend_from_slice(&ct);
                out
            }
            None => {
                let mut out = Vec::with_capacity(body.len() + CHECKSUM_LEN);
                out.extend_from_slice(body);
                out.extend_from_slice(&plain_checksum(label, body));
                out
            }
        }
    }

    /// Undo [`Keys::seal`]; `Err(reason)` when the object is damaged or was sealed otherwise.
    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>, &'static str> {
        match &self.cipher {
            Some(cipher) => {
                if sealed.len() < NONCE_LEN + TAG_LEN {
                    return Err("too short to hold a nonce and a tag");
                }
                let (nonce, ct) = sealed.split_at(NONCE_LEN);
                let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
                cipher
                    .decrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: ct,
                            aad: label,
                        },
                    )
                    .map_err(|_| "authentication failed (damaged, or not written with this key)")
            }
            None => {
                if sealed.len() < CHECKSUM_LEN {
                    return Err("too short to hold a checksum");
                }
                let (body, sum) = sealed.split_at(sealed.len() - CHECKSUM_LEN);
                if plain_checksum(label, body)[..] != *sum {
                    return Err("checksum mismatch");
                }
                Ok(body.to_vec())
            }
        }
    }
}

fn plain_checksum(label: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(body);
    h.finalize().into()
}

/// Argon2id cost parameters of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about 0.1–0.2 s on one core of a current server.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// Upper bounds of the Argon2id costs a key file may ask for: a key file is read before
/// anything is authenticated, so its costs must not let it demand unbounded memory or time.
pub const MAX_KDF_MEMORY_KIB: u32 = 4 << 20;
/// See [`MAX_KDF_MEMORY_KIB`].
pub const MAX_KDF_ITERATIONS: u32 = 1000;
/// See [`MAX_KDF_MEMORY_KIB`].
pub const MAX_KDF_PARALLELISM: u32 = 255;
/// Largest key file read (a real one is under 1 KiB).
pub const MAX_KEY_FILE_LEN: usize = 64 * 1024;

impl KdfParams {
    /// Whether these costs are within the bounds every key file must respect.
    pub fn check(&self) -> Result<(), String> {
        if self.memory_kib > MAX_KDF_MEMORY_KIB
            || self.iterations > MAX_KDF_ITERATIONS
            || self.parallelism > MAX_KDF_PARALLELISM
        {
            return Err(format!(
                "Argon2id costs out of range ({} KiB, {} iterations, {} lanes; at most {MAX_KDF_MEMORY_KIB} KiB, {MAX_KDF_ITERATIONS}, {MAX_KDF_PARALLELISM})",
                self.memory_kib, self.iterations, self.parallelism
            ));
        }
        Ok(())
    }
}

/// A key file under `keys/` (stored as JSON, unencrypted: it holds only the wrapped key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// Always `"argon2id"`.
    pub kdf: String,
    /// Argon2id costs.
    pub kdf_params: KdfParams,
    /// Argon2 salt, hex (16 bytes).
    pub salt: String,
    /// `nonce(12) ‖ AES-256-GCM(master key, aad = "containerarchive key" ‖ repo id)`, hex.
    pub wrapped_key: String,
    /// When the key was made (RFC 3339), as told by the caller.
    pub created_at: String,
    /// Free-form description (user, host), as told by the caller.
    pub comment: String,
}

fn wrap_aad(repo_id: &Id) -> Vec<u8> {
    let mut aad = b"containerarchive key".to_vec();
    aad.extend_from_slice(&repo_id.0);
    aad
}

fn kek(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<Aes256Gcm, String> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| format!("invalid Argon2id parameters: {e}"))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| format!("Argon2id failed: {e}"))?;
    Ok(Aes256Gcm::new((&out).into()))
}

impl KeyFile {
    /// Wrap `master` under `passphrase`.
    pub fn create(
        master: &[u8; 32],
        repo_id: &Id,
        passphrase: &[u8],
        params: KdfParams,
        created_at: String,
        comment: String,
        rng: &mut dyn RandomSource,
    ) -> Result<Self, String> {
        params.check()?;
        let salt: [u8; 16] = random_bytes(rng);
        let nonce: [u8; NONCE_LEN] = random_bytes(rng);
        let cipher = kek(passphrase, &salt, params)?;
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: master,
                    aad: &wrap_aad(repo_id),
                },
            )
            .expect("AES-GCM encrypts 32 bytes");
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&ct);
        Ok(KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            kdf_params: params,
            salt: hex::encode(salt),
            wrapped_key: hex::encode(wrapped),
            created_at,
            comment,
        })
    }

    /// Parse and check a key file: its format, its costs (bounded, see [`KdfParams::check`]),
    /// its salt (8 to 64 bytes) and the length of its wrapped key. Nothing is derived yet.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.len() > MAX_KEY_FILE_LEN {
            return Err(format!(
                "{} bytes, too large for a key file (at most {MAX_KEY_FILE_LEN})",
                data.len()
            ));
        }
        let kf: KeyFile = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        kf.check()?;
        Ok(kf)
    }

    fn check(&self) -> Result<(), String> {
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(format!(
                "unsupported key file (version {}, kdf {})",
                self.version, self.kdf
            ));
        }
        self.kdf_params.check()?;
        let salt = hex::decode(&self.salt).map_err(|_| "salt is not hex".to_string())?;
        if !(8..=64).contains(&salt.len()) {
            return Err(format!("salt of {} bytes (8 to 64 expected)", salt.len()));
        }
        if self.wrapped_key.len() != 2 * (NONCE_LEN + 32 + TAG_LEN) {
            return Err("wrapped_key has the wrong length".into());
        }
        hex::decode(&self.wrapped_key).map_err(|_| "wrapped_key is not hex".to_string())?;
        Ok(())
    }

    /// The master key, or `Ok(None)` when the passphrase does not open this key file.
    /// `Err` means the key file itself is malformed.
    pub fn unwrap_master(
        &self,
        repo_id: &Id,
        passphrase: &[u8],
    ) -> Result<Option<[u8; 32]>, String> {
        self.check()?;
        let salt = hex::decode(&self.salt).map_err(|_| "salt is not hex".to_string())?;
        let wrapped =
            hex::decode(&self.wrapped_key).map_err(|_| "wrapped_key is not hex".to_string())?;
        let cipher = kek(passphrase, &salt, self.kdf_params)?;
        let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().expect("length checked");
        match cipher.decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &wrapped[NONCE_LEN..],
                aad: &wrap_aad(repo_id),
            },
        ) {
            Ok(master) => Ok(Some(
                master
                    .as_slice()
                    .try_into()
                    .map_err(|_| "master key length".to_string())?,
            )),
            Err(_) => Ok(None),
        }
    }
}
