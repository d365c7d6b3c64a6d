//! Browser build of containerarchive: open a downloaded repository held in memory, list its
//! snapshots and restore items, all in the page. Every piece of repository logic is the core
//! crate's; this crate only moves files in and bytes out.

use containerarchive_core::{MemoryStorage, Repository, SnapshotFilter};
use wasm_bindgen::prelude::*;

/// Top-level names of a repository, used to find its root inside a selected folder.
const ROOTS: [&str; 6] = [
    "config.json",
    "keys",
    "packs",
    "snapshots",
    "index",
    "locks",
];

/// The repository key of a file given as a path relative to the selected folder
/// (`myrepo/packs/data/ab/….pack` → `packs/data/ab/….pack`).
pub fn repository_key(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let start = parts.iter().position(|p| ROOTS.contains(p))?;
    Some(parts[start..].join("/"))
}

fn js_error(e: containerarchive_core::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// Files of a repository, gathered before opening it.
#[wasm_bindgen]
#[derive(Default)]
pub struct RepositoryFiles {
    storage: MemoryStorage,
}

#[wasm_bindgen]
impl RepositoryFiles {
    /// No files yet.
    #[wasm_bindgen(constructor)]
    pub fn new() -> RepositoryFiles {
        RepositoryFiles::default()
    }

    /// Add one file by its relative path; returns false for files outside a repository.
    pub fn add(&mut self, path: &str, data: &[u8]) -> bool {
        match repository_key(path) {
            Some(key) => {
                self.storage.overwrite(&key, data.to_vec());
                true
            }
            None => false,
        }
    }

    /// Open the repository (with its passphrase if it is encrypted).
    pub fn open(self, passphrase: Option<String>) -> Result<Archive, JsError> {
        let repo = Repository::open(self.storage, passphrase.as_deref().map(str::as_bytes))
            .map_err(js_error)?;
        Ok(Archive { repo })
    }
}

/// An opened repository.
#[wasm_bindgen]
pub struct Archive {
    repo: Repository<MemoryStorage>,
}

#[wasm_bindgen]
impl Archive {
    /// Every snapshot, oldest first, as a JSON array of manifests with their `id`.
    #[wasm_bindgen(js_name = snapshotsJson)]
    pub fn snapshots_json(&self) -> Result<String, JsError> {
        let snaps = self
            .repo
            .list_snapshots(&SnapshotFilter::default())
            .map_err(js_error)?;
        let rows: Vec<serde_json::Value> = snaps
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s.manifest).expect("manifest serializes");
                v["id"] = serde_json::Value::String(s.id.to_hex());
                v
            })
            .collect();
        Ok(serde_json::Value::Array(rows).to_string())
    }

    /// The content of one item, every chunk verified.
    #[wasm_bindgen(js_name = restoreItem)]
    pub fn restore_item(&self, snapshot: &str, item: &str) -> Result<Vec<u8>, JsError> {
        let snap = self.repo.get_snapshot(snapshot).map_err(js_error)?;
        let mut reader = self.repo.item_reader(&snap, item).map_err(js_error)?;
        let mut out = Vec::with_capacity(reader.item().size as usize);
        while let Some(batch) = reader.next_batch().map_err(js_error)? {
            for c in batch {
                out.extend_from_slice(&c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::repository_key;

    #[test]
    fn paths_inside_a_selected_folder_map_to_repository_keys() {
        assert_eq!(
            repository_key("repo/config.json").as_deref(),
            Some("config.json")
        );
        assert_eq!(
            repository_key("dl/repo/packs/data/ab/ab.pack").as_deref(),
            Some("packs/data/ab/ab.pack")
        );
        assert_eq!(
            repository_key("snapshots/x.snapshot").as_deref(),
            Some("snapshots/x.snapshot")
        );
        assert_eq!(repository_key("repo/readme.txt"), None);
    }
}
