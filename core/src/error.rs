//! Typed errors. Every variant names the object it is about (snapshot, pack, chunk, key file),
//! so a message alone tells an operator where to look.

use crate::storage::StorageError;

/// Every failure the engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `config.json` at the repository location.
    #[error("no repository at {location}: config.json is missing")]
    RepositoryNotFound {
        /// Where the repository is (a path or URL).
        location: String,
    },
    /// `init` was asked to create a repository where one already is.
    #[error("a repository already exists at {location}")]
    RepositoryExists {
        /// Where the repository is (a path or URL).
        location: String,
    },
    /// `init` was asked to create a repository where other files are (another program's
    /// repository, unrelated data): it never mixes its files with them.
    #[error("cannot create a repository at {location}: it holds {} that containerarchive did not write ({}); choose an empty location", plural(.found.len()), sample(.found))]
    NotEmpty {
        /// Where the repository is (a path or URL).
        location: String,
        /// What is there (paths, sorted).
        found: Vec<String>,
    },
    /// No key file under `keys/` opens with the passphrase given (or none was given).
    #[error("{0}")]
    WrongPassphrase(String),
    /// No snapshot has this id (or id prefix).
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    /// No key file has this id (or id prefix).
    #[error("key {0} not found (see `key list`)")]
    KeyNotFound(String),
    /// The id prefix matches more than one snapshot.
    #[error("snapshot id prefix {prefix} is ambiguous: it matches {}", .matches.join(", "))]
    AmbiguousSnapshotId {
        /// The prefix given.
        prefix: String,
        /// The snapshot ids it matches (sorted).
        matches: Vec<String>,
    },
    /// The snapshot has no item of this name.
    #[error("item {item:?} not found in snapshot {snapshot} (items: {})", .available.join(", "))]
    ItemNotFound {
        /// The snapshot (id).
        snapshot: String,
        /// The item asked for.
        item: String,
        /// The items the snapshot has.
        available: Vec<String>,
    },
    /// Stored data does not decode, authenticate or hash to what refers to it.
    #[error("corrupted {object}: {reason}")]
    Corruption {
        /// The object concerned (e.g. `pack <id>`, `chunk <id> in pack <id>`).
        object: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// Another process holds a lock that conflicts with the one asked for.
    #[error("repository is locked: {lock} is held by {holder}. If that process has ended, `containerarchive unlock` removes stale locks; `unlock --force` removes every lock (first check on that host that it is not running); `--retry-lock 10m` waits for it")]
    Locked {
        /// The conflicting lock file.
        lock: String,
        /// Who holds it (host, process, operation, since when).
        holder: String,
    },
    /// Another process changed the repository under an operation in a way that would make its
    /// result wrong (a prune deleted data an ingest reuses, a snapshot appeared during a prune):
    /// nothing was committed; running the operation again is safe.
    #[error("{object} changed concurrently: {reason}")]
    ConcurrentModification {
        /// The object concerned (e.g. `pack <id>`, `chunk <id> in pack <id>`).
        object: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The caller asked the operation to stop (its progress callback returned this): what
    /// was done so far is consistent, as after a crash at that point.
    #[error("stopped: {0}")]
    Cancelled(String),
    /// A caller-supplied value is out of range (item name, tag, option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The repository uses a format or feature this build cannot handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The storage backend failed (I/O error, disk full, permission…).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

fn sample(keys: &[String]) -> String {
    let mut out = keys.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if keys.len() > 5 {
        out.push_str(", …");
    }
    out
}

impl Error {
    /// The name of the error class every face raises for it: the Python exception in
    /// `containerarchive.errors`, and the `name` of the browser module's `Error`s. One table,
    /// so the two never disagree.
    pub fn name(&self) -> &'static str {
        match self {
            Error::RepositoryNotFound { .. } => "RepositoryNotFoundError",
            Error::RepositoryExists { .. } => "RepositoryExistsError",
            Error::NotEmpty { .. } => "UnusableFileError",
            Error::WrongPassphrase(_) => "WrongPassphraseError",
            Error::SnapshotNotFound(_) => "SnapshotNotFoundError",
            Error::KeyNotFound(_) => "KeyNotFoundError",
            Error::AmbiguousSnapshotId { .. } => "AmbiguousSnapshotIdError",
            Error::ItemNotFound { .. } => "ItemNotFoundError",
            Error::Corruption { .. } => "CorruptionError",
            Error::Locked { .. } => "LockedError",
            Error::ConcurrentModification { .. } => "ConcurrentModificationError",
            Error::Cancelled(_) => "ContainerArchiveError",
            Error::InvalidArgument(_) => "InvalidArgumentError",
            Error::Unsupported(_) => "UnsupportedFormatError",
            Error::Storage(StorageError::Archived { .. }) => "ArchivedObjectError",
            Error::Storage(_) => "StorageError",
        }
    }

    /// What is wrong, for a message that names the object itself: a corruption's reason,
    /// any other error's whole message.
    pub(crate) fn detail(&self) -> String {
        match self {
            Error::Corruption { reason, .. } => reason.clone(),
            e => e.to_string(),
        }
    }

    pub(crate) fn corruption(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corruption {
            object: object.into(),
            reason: reason.into(),
        }
    }
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
