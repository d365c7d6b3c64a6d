//! Filesystem storage: one file per object under the repository directory.
//!
//! Objects are written to a temporary name in the target directory, fsynced, then linked to
//! their final name (which fails if it exists: objects are write-once), and the directory is
//! fsynced, so a crash leaves either nothing or the complete object. Temporary files start
//! with `.tmp-` and are never listed.
//!
//! Pack files and their `.idx` are written by a background thread, so that their fsync
//! overlaps with the engine preparing the next pack. Every other operation (any other put, any
//! read, list or delete) first waits until those writes are durable and reports their first
//! error, so what the engine observes, and the order in which things become durable, is exactly
//! that of synchronous writes: an index file or snapshot is never written before the packs it
//! names are on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::write_behind::{Ticket, WriteBehind};
use containerarchive_core::crypto::{random_bytes, RandomSource};
use containerarchive_core::storage::{may_write_in_background, waits_for_background};
use containerarchive_core::{Storage, StorageError};

use crate::os::OsRng;

/// A repository directory on a local or mounted filesystem.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
    background: Mutex<Option<Background>>,
    writes: Arc<WriteBehind>,
}

type Job = (String, PathBuf, Vec<u8>, Ticket);

#[derive(Debug)]
struct Background {
    jobs: SyncSender<Job>,
    thread: JoinHandle<()>,
    /// The process that started the thread (a forked child has the struct, not the thread).
    pid: u32,
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

/// Open an object for reading. Only a regular file is one: a FIFO, a device or a directory in
/// its place is damage to that object, reported at once (opened without blocking, so a FIFO
/// with no writer never hangs the command).
fn open_object(key: &str, path: &Path) -> Result<File, StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| backend(key, e))?;
    let meta = f.metadata().map_err(|e| backend(key, e))?;
    if !meta.is_file() {
        return Err(StorageError::Backend {
            key: key.to_string(),
            message: "not a regular file (a directory, FIFO or device is in its place)".into(),
        });
    }
    Ok(f)
}

/// The whole of an object (see [`open_object`]).
fn read_object(key: &str, path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut f = open_object(key, path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| backend(key, e))?;
    Ok(buf)
}

/// Remove an object: its file, or an empty directory in its place (damage repair replaces).
/// A directory with files in it is never removed: that is an error naming it.
fn remove_object(key: &str, path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Err(e) if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) => fs::remove_dir(path)
            .map_err(|_| StorageError::Backend {
                key: key.to_string(),
                message: format!(
                    "a directory with files in it is in its place ({e}); move it away by hand"
                ),
            }),
        other => other.map_err(|e| backend(key, e)),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsStorage {
    /// Storage rooted at `root` (created on first write). A relative root is made absolute
    /// now, so that a later change of working directory cannot move the repository.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        FsStorage {
            root: std::path::absolute(&root).unwrap_or(root),
            background: Mutex::new(None),
            writes: Arc::default(),
        }
    }

    /// In a forked child, forget the parent's writer thread (it does not exist here; the
    /// parent finishes the writes it had queued): the child starts a thread of its own.
    fn leave_parents_writer(&self) {
        let mut bg = self.background.lock().unwrap_or_else(|e| e.into_inner());
        if bg.as_ref().is_some_and(|b| b.pid != std::process::id()) {
            std::mem::forget(bg.take());
        }
    }

    /// Wait until every background write is durable; the first error of any of them.
    fn settle(&self) -> Result<(), StorageError> {
        self.leave_parents_writer();
        self.writes.settle()
    }

    fn put_in_background(
        &self,
        key: &str,
        path: PathBuf,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.leave_parents_writer();
        let mut bg = self.background.lock().unwrap_or_else(|e| e.into_inner());
        // The channel below bounds what is queued; no further limit here.
        let ticket = self.writes.begin(usize::MAX)?;
        if bg.is_none() {
            // One job queued beside the one being written bounds memory to two packs.
            let (jobs, rx) = sync_channel::<Job>(1);
            let writes = self.writes.clone();
            let spawned = std::thread::Builder::new()
                .name("ca-pack-write".into())
                .spawn(move || {
                    for (key, path, data, ticket) in rx {
                        let result = write_exact(&key, &path, &data);
                        drop(data);
                        release_free_memory();
                        writes.finish(ticket, result);
                    }
                });
            let thread = match spawned {
                Ok(t) => t,
                Err(e) => {
                    let e = backend(key, e);
                    self.writes.finish(ticket, Ok(()));
                    return Err(e);
                }
            };
            *bg = Some(Background {
                jobs,
                thread,
                pid: std::process::id(),
            });
        }
        let worker = bg.as_ref().expect("just started");
        worker
            .jobs
            .send((key.to_string(), path, data, ticket))
            .expect("the writer thread lives as long as the storage");
        Ok(())
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

    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        out: &mut Vec<(String, u64, Option<i64>)>,
    ) -> std::io::Result<()> {
        for entry in read_dir_if_present(dir)?.into_iter().flatten() {
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
            // A file deleted between the directory read and this look is simply not listed.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() && containerarchive_core::layout::classify(&key).is_none() {
                self.walk(&entry.path(), &key, out)?;
            } else {
                // A directory named as an object (in place of a manifest, a pack…) is listed
                // as one: reading it fails, so it is reported as damage, never overlooked.
                out.push((key, meta.len(), modified_ms(&meta)));
            }
        }
        Ok(())
    }
}

/// Repository directories: owner only, whatever the umask (restic's choice).
pub(crate) const DIR_MODE: u32 = 0o700;
/// Repository files: owner read/write only, whatever the umask.
pub(crate) const FILE_MODE: u32 = 0o600;

fn create_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.is_dir())
        .map(Path::to_path_buf)
        .collect();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    for d in &missing {
        // The umask may have taken bits away; the mode is set exactly.
        fs::set_permissions(d, fs::Permissions::from_mode(DIR_MODE))?;
    }
    // Make the new directory entries durable too.
    for d in missing.iter().rev() {
        match d.parent() {
            Some(parent) if parent.as_os_str().is_empty() => sync_dir(Path::new("."))?,
            Some(parent) => sync_dir(parent)?,
            None => {}
        }
    }
    Ok(())
}

/// Write `data` to a temporary file next to `path`, fsync it, `place` it under `path` (link or
/// rename), fsync the directory; the temporary name is removed either way.
fn write_via_temp(
    key: &str,
    path: &Path,
    data: &[u8],
    place: fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), StorageError> {
    let dir = path.parent().expect("keys have a parent").to_path_buf();
    create_dirs(&dir).map_err(|e| backend(key, e))?;
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}",
        hex::encode(random_bytes::<12>(&mut OsRng as &mut dyn RandomSource))
    ));
    let result = (|| {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        place(&tmp, path)?;
        sync_dir(&dir)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => StorageError::AlreadyExists(key.to_string()),
        _ => backend(key, e),
    })
}

/// Write a new object: temp file, fsync, link into place (link(2) refuses to replace an
/// existing name: write-once even under races), fsync the directory.
fn write_once(key: &str, path: &Path, data: &[u8]) -> Result<(), StorageError> {
    write_via_temp(key, path, data, |tmp, path| fs::hard_link(tmp, path))
}

/// [`write_once`], but an object already there with other (damaged) bytes is replaced, and
/// identical bytes are left alone: for content-addressed objects written in the background.
fn write_exact(key: &str, path: &Path, data: &[u8]) -> Result<(), StorageError> {
    match write_once(key, path, data) {
        Err(StorageError::AlreadyExists(_)) => {
            // Other bytes, or no readable file (a directory, FIFO…): damage, replaced.
            if read_object(key, path).ok().as_deref() != Some(data) {
                remove_object(key, path)?;
                write_once(key, path, data)?;
            }
            Ok(())
        }
        other => other,
    }
}

impl Drop for FsStorage {
    fn drop(&mut self) {
        if let Some(bg) = self
            .background
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            if bg.pid != std::process::id() {
                std::mem::forget(bg); // the parent's thread: not in this process
                return;
            }
            drop(bg.jobs);
            let _ = bg.thread.join();
        }
    }
}

impl Storage for FsStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.settle()?;
        read_object(key, &self.path(key)?)
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        self.settle()?;
        let mut f = open_object(key, &self.path(key)?)?;
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
        if may_write_in_background(key) {
            return self.put_in_background(key, path, data.to_vec());
        }
        if !waits_for_background(key) {
            return write_once(key, &path, data);
        }
        self.settle()?;
        write_once(key, &path, data)
    }

    fn put_exact_owned(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        if may_write_in_background(key) {
            // Background writes already keep identical bytes and replace damaged ones.
            return self.put_in_background(key, path, data);
        }
        self.settle()?;
        containerarchive_core::storage::put_exact(self, key, &data)
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self
            .list_with_times(prefix)?
            .into_iter()
            .map(|(k, s, _)| (k, s))
            .collect())
    }

    fn list_with_times(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, u64, Option<i64>)>, StorageError> {
        self.settle()?;
        // Prefixes the engine uses end at a directory boundary ("snapshots/", "packs/data/").
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let mut out = Vec::new();
        self.walk(&self.root.join(dir_part), dir_part, &mut out)
            .map_err(|e| backend(prefix, e))?;
        out.retain(|(k, _, _)| k.starts_with(prefix));
        Ok(out)
    }

    fn replace(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        self.settle()?;
        let path = self.path(key)?;
        // rename(2) replaces the old file atomically: readers see the old or the new bytes.
        match write_via_temp(key, &path, data, |tmp, path| fs::rename(tmp, path)) {
            // An (empty) directory in place of the object is damage: removed, then written.
            Err(_) if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {
                remove_object(key, &path)?;
                write_via_temp(key, &path, data, |tmp, path| fs::rename(tmp, path))
            }
            other => other,
        }
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        if waits_for_background(key) {
            self.settle()?;
        }
        let path = self.path(key)?;
        remove_object(key, &path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(|e| backend(key, e))?;
        }
        Ok(())
    }

    fn remove_partial_writes(&self, written_before_ms: Option<i64>) -> Result<u64, StorageError> {
        self.settle()?;
        let mut removed = 0;
        remove_temp_files(&self.root, written_before_ms, &mut removed)
            .map_err(|e| backend("(temporary files)", e))?;
        Ok(removed)
    }
}

/// The entries of `dir`, or `None` when it does not exist (a repository creates its
/// directories lazily).
fn read_dir_if_present(dir: &Path) -> std::io::Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A file's mtime in milliseconds since the epoch. It is set by the kernel of the machine
/// holding the file (the NFS server for a mount): the storage's clock, not a backup host's.
fn modified_ms(meta: &fs::Metadata) -> Option<i64> {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}

/// Delete the temporary files under `dir` (what a killed writer left), counting them.
fn remove_temp_files(
    dir: &Path,
    written_before_ms: Option<i64>,
    removed: &mut u64,
) -> std::io::Result<()> {
    for entry in read_dir_if_present(dir)?.into_iter().flatten() {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_temp_files(&entry.path(), written_before_ms, removed)?;
        } else if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
            && written_before_ms.is_none_or(|limit| {
                entry
                    .metadata()
                    .ok()
                    .and_then(|m| modified_ms(&m))
                    .is_some_and(|t| t < limit)
            })
        {
            match fs::remove_file(entry.path()) {
                Ok(()) => *removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Hand free heap pages back to the system after each background pack write. Pack-sized buffers
/// come from the heap (see `tune_malloc`), and the holes they leave between live allocations
/// would otherwise stay resident: a long ingest's RSS crept up by ~3 MiB per GB of input.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused pages of the allocator's own heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
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
        s.put("keys/k.key", b"key").unwrap();
        assert_eq!(
            s.put("keys/k.key", b"x"),
            Err(StorageError::AlreadyExists("keys/k.key".into()))
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
        assert_eq!(s.get("keys/k.key").unwrap(), b"key");
        assert!(s.list("index/").unwrap().is_empty());
        s.delete("snapshots/1.snapshot").unwrap();
        assert_eq!(
            s.get("snapshots/1.snapshot"),
            Err(StorageError::NotFound("snapshots/1.snapshot".into()))
        );
        assert!(s.get("../etc/passwd").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn background_pack_writes_are_seen_by_every_later_operation_and_fail_loudly() {
        let root = temp_root("background");
        let s = FsStorage::new(&root);
        for i in 0..5u8 {
            s.put(&format!("packs/data/0{i}/0{i}.pack"), &vec![i; 3 << 20])
                .unwrap();
        }
        assert_eq!(s.list("packs/data/").unwrap().len(), 5);
        assert_eq!(
            s.get_range("packs/data/03/03.pack", 10, 2).unwrap(),
            vec![3, 3]
        );
        // The same bytes again are fine; other bytes under the name replace damaged ones.
        s.put("packs/data/01/01.pack", &vec![1; 3 << 20]).unwrap();
        s.put("packs/data/01/01.pack", b"repaired").unwrap();
        assert_eq!(s.get("packs/data/01/01.pack").unwrap(), b"repaired");
        // A failing background write is reported by the next operation, not lost.
        fs::write(
            root.join("packs/data/ff"),
            b"a file where a directory belongs",
        )
        .unwrap();
        s.put("packs/data/ff/ff.pack", b"x").unwrap();
        let err = s.put("index/1.index", b"i").unwrap_err();
        assert!(err.to_string().contains("packs/data/ff/ff.pack"), "{err}");
        assert_eq!(
            s.get("index/1.index").unwrap_err(),
            StorageError::NotFound("index/1.index".into())
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
