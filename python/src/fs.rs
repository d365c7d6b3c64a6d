//! Filesystem storage: one file per object under the repository directory.
//!
//! Objects are written to a temporary name in the target directory, fsynced, then linked to
//! their final name (which fails if it exists: objects are write-once), and the directory is
//! fsynced, so a crash leaves either nothing or the complete object. Temporary files start
//! with `.tmp-` and are never listed.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use containerarchive_core::crypto::{random_bytes, RandomSource};
use containerarchive_core::{Storage, StorageError};

use crate::OsRng;

/// A repository directory on a local or mounted filesystem.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

const TMP_PREFIX: &str = ".tmp-";

fn backend(key: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        ErrorKind::NotFound => StorageError::NotFound(key.to_string()),
        _ => StorageError::Backend {
            key: key.to_string(),
            message: e.to_string(),
        },
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsStorage {
    /// Storage rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        // Keys are made by the engine, but never let one escape the repository directory.
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
            || key.contains('\\')
        {
            return Err(StorageError::Backend {
                key: key.into(),
                message: "invalid storage key".into(),
            });
        }
        Ok(self.root.join(key))
    }

    fn create_dirs(&self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.is_dir())
            .map(Path::to_path_buf)
            .collect();
        fs::create_dir_all(dir)?;
        // Make the new directory entries durable too.
        for d in missing.iter().rev() {
            if let Some(parent) = d.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<(String, u64)>) -> std::io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                self.walk(&entry.path(), &key, out)?;
            } else {
                out.push((key, meta.len()));
            }
        }
        Ok(())
    }
}

impl Storage for FsStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        fs::read(self.path(key)?).map_err(|e| backend(key, e))
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        let mut f = File::open(self.path(key)?).map_err(|e| backend(key, e))?;
        let size = f.metadata().map_err(|e| backend(key, e))?.len();
        let len = length.min(size.saturating_sub(offset));
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| backend(key, e))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(|e| backend(key, e))?;
        Ok(buf)
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().expect("keys have a parent").to_path_buf();
        self.create_dirs(&dir).map_err(|e| backend(key, e))?;
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}",
            hex::encode(random_bytes::<12>(&mut OsRng as &mut dyn RandomSource))
        ));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            // link(2) refuses to replace an existing name: write-once even under races.
            fs::hard_link(&tmp, &path)?;
            sync_dir(&dir)
        })();
        let _ = fs::remove_file(&tmp);
        result.map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => StorageError::AlreadyExists(key.to_string()),
            _ => backend(key, e),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        // Prefixes the engine uses end at a directory boundary ("snapshots/", "packs/data/").
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let mut out = Vec::new();
        self.walk(&self.root.join(dir_part), dir_part, &mut out)
            .map_err(|e| backend(prefix, e))?;
        out.retain(|(k, _)| k.starts_with(prefix));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        fs::remove_file(&path).map_err(|e| backend(key, e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(|e| backend(key, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ca-fs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn objects_are_write_once_listed_by_prefix_and_ranged() {
        let root = temp_root("basic");
        let s = FsStorage::new(&root);
        s.put("packs/data/ab/abc.pack", b"0123456789").unwrap();
        assert_eq!(
            s.put("packs/data/ab/abc.pack", b"x"),
            Err(StorageError::AlreadyExists("packs/data/ab/abc.pack".into()))
        );
        assert_eq!(
            s.get_range("packs/data/ab/abc.pack", 3, 4).unwrap(),
            b"3456"
        );
        assert_eq!(s.get_range("packs/data/ab/abc.pack", 8, 10).unwrap(), b"89");
        s.put("snapshots/1.snapshot", b"s").unwrap();
        fs::write(root.join("snapshots/.tmp-leftover"), b"partial").unwrap();
        assert_eq!(
            s.list("snapshots/").unwrap(),
            vec![("snapshots/1.snapshot".to_string(), 1)]
        );
        assert_eq!(s.list("packs/").unwrap().len(), 1);
        assert!(s.list("index/").unwrap().is_empty());
        s.delete("snapshots/1.snapshot").unwrap();
        assert_eq!(
            s.get("snapshots/1.snapshot"),
            Err(StorageError::NotFound("snapshots/1.snapshot".into()))
        );
        assert!(s.get("../etc/passwd").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
