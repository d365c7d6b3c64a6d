//! Browser build of containerarchive: verify and restore a downloaded repository in the page.
//!
//! Every piece of repository logic is the core crate's. This crate adapts the files the user
//! selected to the core's `Storage` trait and exposes an `Engine` to JavaScript. The engine is
//! meant to run in a Web Worker, where the `read` callback can use `FileReaderSync` to read
//! exactly the byte ranges needed: neither the repository nor a restored item is ever held
//! whole in memory. `js/containerarchive_wasm.js` wraps it as the public `Archive` API.

use std::collections::{BTreeMap, HashMap};

use containerarchive_core::layout::{self, CONFIG_KEY};
use containerarchive_core::ops::restore_plan::RestorePlan;
use containerarchive_core::ops::verify::{Finding, VerifyLevel, VerifyOptions};
use containerarchive_core::progress::Progress;
use containerarchive_core::snapshot::parse_time;
use containerarchive_core::storage::StorageResult;
use containerarchive_core::{
    Error, ItemReader, Repository, Snapshot, SnapshotFilter, Storage, StorageError,
};
use js_sys::{Function, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The folders holding a repository among the selected paths (`config.json` is there), as
/// prefixes ending in `/` (`""` when the selection's top level is one), sorted.
pub fn repository_roots(paths: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let p = p.trim_start_matches('/');
            if p == CONFIG_KEY {
                Some(String::new())
            } else {
                p.strip_suffix(CONFIG_KEY)
                    .filter(|r| r.ends_with('/'))
                    .map(str::to_string)
            }
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// Which repository of the selection to open: `wanted`, or the only one; `None` for a flat
/// download (bare file names, no folders). Errors name what is wrong with the selection: no
/// repository in a folder (`RepositoryNotFoundError`), several and none chosen
/// (`MultipleRepositoriesError`, with the choices in its `roots` property).
pub fn choose_root(paths: &[String], wanted: Option<&str>) -> Result<Option<String>, JsValue> {
    let roots = repository_roots(paths);
    if let Some(w) = wanted {
        let w = if w.is_empty() || w.ends_with('/') {
            w.to_string()
        } else {
            format!("{w}/")
        };
        return match roots.contains(&w) {
            true => Ok(Some(w)),
            false => Err(named(
                "RepositoryNotFoundError",
                &format!("no repository at {w:?} among the selected files (no config.json there)"),
            )),
        };
    }
    match roots.len() {
        1 => Ok(roots.into_iter().next()),
        0 if paths.iter().all(|p| !p.contains('/')) => Ok(None),
        0 => Err(named(
            "RepositoryNotFoundError",
            &format!(
                "the selected folder holds no repository: no config.json in it or below it ({} files selected); choose the folder that holds config.json, keys/, packs/ and snapshots/",
                paths.len()
            ),
        )),
        n => {
            let err = named(
                "MultipleRepositoriesError",
                &format!(
                    "this folder holds {n} repositories: {}. Choose one",
                    roots
                        .iter()
                        .map(|r| if r.is_empty() { "(top level)" } else { r.as_str() })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            let list = js_sys::Array::new();
            for r in &roots {
                list.push(&JsValue::from_str(r));
            }
            let _ = js_sys::Reflect::set(&err, &JsValue::from_str("roots"), &list);
            Err(err)
        }
    }
}

fn named(name: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name(name);
    err.into()
}

/// The repository key of a selected file: its path below the repository's folder `root`
/// (`repo/packs/data/ab/….pack` → `packs/data/ab/….pack`), or, for a flat download (`root`
/// `None`), the key its bare name implies (`ab….pack` → `packs/data/ab/ab….pack`). `None` for
/// a file that is not part of the repository.
pub fn repository_key(path: &str, root: Option<&str>) -> Option<String> {
    let path = path.trim_start_matches('/');
    if let Some(root) = root {
        let key = path.strip_prefix(root)?;
        return layout::classify(key).map(|_| key.to_string());
    }
    if path.contains('/') {
        return None;
    }
    if path == CONFIG_KEY {
        return Some(path.to_string());
    }
    let (stem, ext) = path.rsplit_once('.')?;
    let key = match ext {
        "pack" | "idx" => format!("packs/data/{}/{path}", stem.get(..2)?),
        "parity" | "group" => format!("parity/{path}"),
        "key" => format!("keys/{path}"),
        "snapshot" => format!("snapshots/{path}"),
        "index" => format!("index/{path}"),
        _ => return None,
    };
    layout::classify(&key).map(|_| key)
}

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(e.name());
    err.into()
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializes")
}

/// Selected files, read through a JavaScript callback `read(key, offset, length) → Uint8Array`.
struct JsStorage {
    sizes: BTreeMap<String, u64>,
    read: Function,
}

impl JsStorage {
    fn read(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        let size = *self
            .sizes
            .get(key)
            .ok_or_else(|| StorageError::NotFound(key.to_string()))?;
        let length = length.min(size.saturating_sub(offset));
        let out = self
            .read
            .call3(
                &JsValue::NULL,
                &JsValue::from_str(key),
                &JsValue::from_f64(offset as f64),
                &JsValue::from_f64(length as f64),
            )
            .map_err(|e| StorageError::Backend {
                key: key.to_string(),
                message: e
                    .as_string()
                    .or_else(|| js_sys::Error::from(e).message().as_string())
                    .unwrap_or_else(|| "read failed".into()),
            })?;
        Ok(Uint8Array::new(&out).to_vec())
    }
}

impl Storage for JsStorage {
    fn location(&self) -> String {
        "the selected files".into()
    }
    fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        self.read(key, 0, u64::MAX)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> StorageResult<Vec<u8>> {
        self.read(key, offset, length)
    }
    fn put(&self, key: &str, _data: &[u8]) -> StorageResult<()> {
        Err(StorageError::Backend {
            key: key.into(),
            message: "the browser build reads repositories; it never writes".into(),
        })
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        Ok(self
            .sizes
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, s)| (k.clone(), *s))
            .collect())
    }
    fn delete(&self, key: &str) -> StorageResult<()> {
        self.put(key, &[])
    }
}

/// A snapshot as the JS API shows it (camelCase, same fields as the Python `Snapshot`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsSnapshot {
    id: String,
    version: u32,
    created_at: String,
    tags: BTreeMap<String, String>,
    /// The host that made it; `null` for snapshots from before hosts were recorded.
    host: Option<String>,
    original_size: u64,
    stored_size: u64,
    chunk_count: u64,
    new_chunks: u64,
    reused_chunks: u64,
    items: Vec<JsItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsItem {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    size: u64,
    chunk_count: u64,
}

impl From<&Snapshot> for JsSnapshot {
    fn from(s: &Snapshot) -> Self {
        let m = &s.manifest;
        JsSnapshot {
            id: s.id.to_hex(),
            version: m.version,
            created_at: m.created_at.clone(),
            tags: m.tags.clone(),
            host: m.host.clone(),
            original_size: m.original_size,
            stored_size: m.stored_size,
            chunk_count: m.chunk_count,
            new_chunks: m.new_chunks,
            reused_chunks: m.reused_chunks,
            items: m
                .items
                .iter()
                .map(|i| JsItem {
                    name: i.name.clone(),
                    kind: i.kind.clone(),
                    size: i.size,
                    chunk_count: i.chunk_count,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsVerifyStats {
    packs_checked: u64,
    chunks_checked: u64,
    snapshots_checked: u64,
    bytes_read: u64,
    groups_checked: u64,
    unindexed_packs: u64,
}

#[derive(Serialize)]
struct JsVerifyResult<'a> {
    ok: bool,
    errors: &'a [Finding],
    stats: JsVerifyStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsPlan<'a> {
    snapshot: &'a str,
    items: &'a [String],
    files: &'a [containerarchive_core::ops::restore_plan::PlanFile],
    total_bytes: u64,
    missing: &'a [String],
    damaged: &'a [String],
    complete: bool,
}

/// Filter given by JavaScript: `{tags, after, before}` (times as ISO 8601 strings).
#[derive(serde::Deserialize, Default)]
struct JsFilter {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    after: Option<String>,
    before: Option<String>,
    host: Option<String>,
}

/// An opened repository.
#[wasm_bindgen]
pub struct Engine {
    repo: Repository<JsStorage>,
    readers: HashMap<u32, ItemReader<JsStorage>>,
    next_reader: u32,
}

#[wasm_bindgen]
impl Engine {
    /// Open the repository made of the files at `paths` (relative paths or bare names, with
    /// their `sizes`), read through `read(key, offset, length)`.
    pub fn open(
        paths: Vec<String>,
        sizes: Vec<f64>,
        read: Function,
        passphrase: Option<String>,
        root: Option<String>,
    ) -> Result<Engine, JsValue> {
        let sizes = paths
            .iter()
            .zip(sizes)
            .filter_map(|(p, s)| Some((repository_key(p, root.as_deref())?, s as u64)))
            .collect();
        let storage = JsStorage { sizes, read };
        let passphrase = passphrase.filter(|p| !p.is_empty());
        let repo = Repository::open(storage, passphrase.as_deref().map(str::as_bytes))
            .map_err(js_error)?;
        Ok(Engine {
            repo,
            readers: HashMap::new(),
            next_reader: 1,
        })
    }

    /// The repository key a selected path maps to, below the repository folder `root` (from
    /// `chooseRoot`; `undefined` for a flat download).
    #[wasm_bindgen(js_name = repositoryKey)]
    pub fn repository_key_of(path: &str, root: Option<String>) -> Option<String> {
        repository_key(path, root.as_deref())
    }

    /// The repository folder to open among the selected `paths`: `wanted`, or the only one
    /// there is (`undefined` for a flat download). Throws `MultipleRepositoriesError` (with
    /// `roots`) when the selection holds several, `RepositoryNotFoundError` when it holds none.
    #[wasm_bindgen(js_name = chooseRoot)]
    pub fn choose_root_of(
        paths: Vec<String>,
        wanted: Option<String>,
    ) -> Result<Option<String>, JsValue> {
        choose_root(&paths, wanted.as_deref())
    }

    /// Snapshots matching a JSON filter `{tags, after, before, host}`, oldest first, as JSON.
    pub fn snapshots(&self, filter_json: &str) -> Result<String, JsValue> {
        let f: JsFilter = serde_json::from_str(filter_json).unwrap_or_default();
        let time = |s: Option<String>| {
            s.map(|s| parse_time(&s).map_err(|e| js_error(Error::InvalidArgument(e))))
                .transpose()
        };
        let filter = SnapshotFilter {
            tags: f.tags,
            after: time(f.after)?,
            before: time(f.before)?,
            host: f.host,
        };
        let snaps = self.repo.list_snapshots(&filter).map_err(js_error)?;
        Ok(to_json(
            &snaps.iter().map(JsSnapshot::from).collect::<Vec<_>>(),
        ))
    }

    /// Verify at `level`; `on_progress(fraction)` is called as it goes. Returns
    /// `{ok, errors: [{kind, pack, chunk, snapshot, message}], stats}` as JSON.
    pub fn verify(&self, level: &str, on_progress: Option<Function>) -> Result<String, JsValue> {
        let level = VerifyLevel::parse(level).ok_or_else(|| {
            js_error(Error::InvalidArgument(format!(
                "unknown verify level {level:?}: use quick, standard or full"
            )))
        })?;
        let mut last = -1.0;
        let progress = &mut |p: &Progress<'_>| {
            if let Some(cb) = &on_progress {
                if p.fraction - last >= 0.01 || p.fraction >= 1.0 {
                    last = p.fraction;
                    let _ = cb.call1(&JsValue::NULL, &JsValue::from_f64(p.fraction));
                }
            }
            Ok(())
        };
        let report = self
            .repo
            .verify(VerifyOptions::new(level).on_progress(progress))
            .map_err(js_error)?;
        let st = &report.stats;
        Ok(to_json(&JsVerifyResult {
            ok: report.ok,
            errors: &report.errors,
            stats: JsVerifyStats {
                packs_checked: st.packs_checked,
                chunks_checked: st.chunks_checked,
                snapshots_checked: st.snapshots_checked,
                bytes_read: st.bytes_read,
                groups_checked: st.groups_checked,
                unindexed_packs: st.unindexed_packs,
            },
        }))
    }

    /// The files restoring `item` (or the whole snapshot) needs, as JSON
    /// `{snapshot, items, files: [{path, size, present, damaged}], totalBytes, missing,
    /// damaged, complete}`.
    #[wasm_bindgen(js_name = requiredFiles)]
    pub fn required_files(&self, snapshot: &str, item: Option<String>) -> Result<String, JsValue> {
        let snap = self.repo.get_snapshot(snapshot).map_err(js_error)?;
        let p: RestorePlan = self
            .repo
            .restore_plan(&snap, item.as_deref())
            .map_err(js_error)?;
        Ok(to_json(&JsPlan {
            snapshot: &p.snapshot,
            items: &p.items,
            files: &p.files,
            total_bytes: p.total_bytes,
            missing: &p.missing,
            damaged: &p.damaged,
            complete: p.complete,
        }))
    }

    /// Start restoring an item; returns a handle for [`Engine::restore_next`].
    #[wasm_bindgen(js_name = restoreOpen)]
    pub fn restore_open(&mut self, snapshot: &str, item: &str) -> Result<u32, JsValue> {
        let snap = self.repo.get_snapshot(snapshot).map_err(js_error)?;
        let reader = self.repo.item_reader(&snap, item).map_err(js_error)?;
        let handle = self.next_reader;
        self.next_reader += 1;
        self.readers.insert(handle, reader);
        Ok(handle)
    }

    /// The item's size in bytes.
    #[wasm_bindgen(js_name = restoreSize)]
    pub fn restore_size(&self, handle: u32) -> f64 {
        self.readers
            .get(&handle)
            .map_or(0.0, |r| r.item().size as f64)
    }

    /// The next few MiB of the item, every chunk verified; `undefined` at the end.
    #[wasm_bindgen(js_name = restoreNext)]
    pub fn restore_next(&mut self, handle: u32) -> Result<Option<Vec<u8>>, JsValue> {
        let reader = self.readers.get_mut(&handle).ok_or_else(|| {
            js_error(Error::InvalidArgument(format!(
                "no restore {handle} in progress"
            )))
        })?;
        match reader.next_batch().map_err(js_error)? {
            Some(chunks) => Ok(Some(chunks.concat())),
            None => {
                self.readers.remove(&handle);
                Ok(None)
            }
        }
    }

    /// Abandon a restore.
    #[wasm_bindgen(js_name = restoreClose)]
    pub fn restore_close(&mut self, handle: u32) {
        self.readers.remove(&handle);
    }
}

#[cfg(test)]
mod tests {
    use super::{repository_key, repository_roots};

    #[test]
    fn selected_paths_and_flat_downloads_map_to_repository_keys() {
        let id = "ab".repeat(32);
        let root = Some("dl/repo/");
        assert_eq!(
            repository_key("dl/repo/config.json", root).as_deref(),
            Some("config.json")
        );
        assert_eq!(
            repository_key(&format!("dl/repo/packs/data/ab/{id}.pack"), root).as_deref(),
            Some(format!("packs/data/ab/{id}.pack").as_str())
        );
        assert_eq!(
            repository_key(&format!("{id}.pack"), None).as_deref(),
            Some(format!("packs/data/ab/{id}.pack").as_str())
        );
        assert_eq!(
            repository_key(&format!("{id}.snapshot"), None).as_deref(),
            Some(format!("snapshots/{id}.snapshot").as_str())
        );
        assert_eq!(repository_key("dl/repo/readme.txt", root), None);
        assert_eq!(repository_key(&format!("dl/other/{id}.pack"), root), None);
        assert_eq!(repository_key("short.pack", None), None);
    }

    #[test]
    fn roots_are_found_by_config_json_whatever_the_folder_names() {
        let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            repository_roots(&paths(&[
                "all/a/config.json",
                "all/b/config.json",
                "all/a/keys/x"
            ])),
            ["all/a/", "all/b/"]
        );
        assert_eq!(
            repository_roots(&paths(&["snapshots/config.json", "snapshots/index/x"])),
            ["snapshots/"]
        );
        assert_eq!(repository_roots(&paths(&["config.json"])), [""]);
        assert!(repository_roots(&paths(&["x/notconfig.json"])).is_empty());
    }
}
