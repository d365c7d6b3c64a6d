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
use containerarchive_core::ops::verify::{VerifyLevel, VerifyOptions};
use containerarchive_core::progress::Progress;
use containerarchive_core::snapshot::parse_time;
use containerarchive_core::storage::StorageResult;
use containerarchive_core::{
    Error, ItemReader, Repository, Snapshot, SnapshotFilter, Storage, StorageError,
    UnreadableSnapshot,
};
use js_sys::{Function, Uint8Array};
use serde::{Deserialize, Serialize};
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

/// Keys of the core's JSON the JS API leaves out, with why: the ids of an item's chunk-list
/// blobs are a storage detail only restore needs, and restore reads them inside the engine (the
/// Python API leaves them out for the same reason).
const NOT_SHOWN: &[&str] = &["chunk_lists"];

/// Objects whose keys are data, not field names: never renamed.
const DATA_KEYS: &[&str] = &["tags"];

/// The one place the JS API renames the core's JSON: object keys from snake_case to camelCase
/// (`created_at` → `createdAt`), except inside [`DATA_KEYS`], and [`NOT_SHOWN`] dropped.
fn js_view(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !NOT_SHOWN.contains(&k.as_str()))
                .map(|(k, v)| {
                    let v = if DATA_KEYS.contains(&k.as_str()) {
                        v
                    } else {
                        js_view(v)
                    };
                    (camel_case(&k), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(js_view).collect()),
        other => other,
    }
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// `value` (a core result) as the JS API's JSON text.
fn to_js_json<T: Serialize>(value: &T) -> String {
    js_view(serde_json::to_value(value).expect("a result always serializes")).to_string()
}

/// Filter given by JavaScript: `{tags, after, before, host}` (times as RFC 3339 strings).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsFilter {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    after: Option<String>,
    before: Option<String>,
    host: Option<String>,
}

/// The core's snapshot filter for the JSON `filter_json`; `InvalidArgumentError` when it is
/// not one (a tag value that is not a string, a time that is not RFC 3339).
fn snapshot_filter(filter_json: &str) -> Result<SnapshotFilter, JsValue> {
    let invalid = |e: String| js_error(Error::InvalidArgument(e));
    let f: JsFilter = serde_json::from_str(filter_json)
        .map_err(|e| invalid(format!("not a snapshot filter: {e}")))?;
    let time = |s: Option<String>| s.map(|s| parse_time(&s).map_err(invalid)).transpose();
    Ok(SnapshotFilter {
        tags: f.tags,
        after: time(f.after)?,
        before: time(f.before)?,
        host: f.host,
    })
}

/// The snapshots of `snapshots_json` (a JSON array as [`Engine::snapshots`] returns) that pass
/// the filter `filter_json` (`{tags, after, before, host}`), as a JSON array, order kept. The
/// rule is the core's ([`SnapshotFilter::admits`]): the page filters the list it holds with it,
/// without a round trip to its worker. Throws `InvalidArgumentError` for a bad filter.
#[wasm_bindgen(js_name = selectSnapshots)]
pub fn select_snapshots(snapshots_json: &str, filter_json: &str) -> Result<String, JsValue> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed {
        created_at: String,
        tags: BTreeMap<String, String>,
        host: Option<String>,
    }
    let filter = snapshot_filter(filter_json)?;
    let invalid = |e: String| js_error(Error::InvalidArgument(e));
    let all: Vec<serde_json::Value> = serde_json::from_str(snapshots_json)
        .map_err(|e| invalid(format!("not a snapshot list: {e}")))?;
    let mut kept = Vec::with_capacity(all.len());
    for value in all {
        let s = Listed::deserialize(&value)
            .map_err(|e| invalid(format!("not a listed snapshot: {e}")))?;
        let time = parse_time(&s.created_at).map_err(invalid)?;
        if filter.admits(time, &s.tags, s.host.as_deref()) {
            kept.push(value);
        }
    }
    Ok(serde_json::Value::Array(kept).to_string())
}

/// `time` itself when the engine reads it as a time (RFC 3339), else `undefined`: the page
/// converts the other forms it accepts (`Date` objects, other `Date.parse` forms) to RFC 3339.
#[wasm_bindgen(js_name = engineTime)]
pub fn engine_time(time: &str) -> Option<String> {
    parse_time(time).ok().map(|_| time.to_string())
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
    /// A snapshot whose manifest cannot be read is left out ([`Engine::unreadable`] names it).
    pub fn snapshots(&self, filter_json: &str) -> Result<String, JsValue> {
        let filter = snapshot_filter(filter_json)?;
        let scan = self.repo.scan_snapshots(&filter).map_err(js_error)?;
        let views: Vec<_> = scan.snapshots.iter().map(Snapshot::view).collect();
        Ok(to_js_json(&views))
    }

    /// The snapshots whose manifest cannot be read, as JSON `[{id, reason}]` (by id).
    pub fn unreadable(&self) -> Result<String, JsValue> {
        let scan = self
            .repo
            .scan_snapshots(&SnapshotFilter::default())
            .map_err(js_error)?;
        let rows: Vec<_> = scan
            .unreadable
            .iter()
            .map(UnreadableSnapshot::view)
            .collect();
        Ok(to_js_json(&rows))
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
        Ok(to_js_json(&report))
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
        Ok(to_js_json(&p))
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
    use super::{js_view, repository_key, repository_roots};
    use serde_json::json;

    #[test]
    fn the_js_view_camel_cases_field_names_but_not_tag_names_and_drops_chunk_lists() {
        let core = json!([{
            "id": "ab",
            "created_at": "2026-01-01T00:00:00Z",
            "tags": {"snake_case_tag": "v", "x": "y_z"},
            "host": null,
            "items": [{"name": "a_b.sql", "type": "raw", "chunk_count": 2, "chunk_lists": ["cd"],
                       "command": {"argv": ["pg_dump"], "exit_status": 0}}],
        }]);
        assert_eq!(
            js_view(core),
            json!([{
                "id": "ab",
                "createdAt": "2026-01-01T00:00:00Z",
                "tags": {"snake_case_tag": "v", "x": "y_z"},
                "host": null,
                "items": [{"name": "a_b.sql", "type": "raw", "chunkCount": 2,
                           "command": {"argv": ["pg_dump"], "exitStatus": 0}}],
            }])
        );
    }

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
