// containerarchive in the browser: verify and restore a downloaded repository locally.
//
//   import init, { Archive } from "./pkg/containerarchive_wasm.js";
//   await init();
//   const archive = await Archive.open(files, passphrase, { root });   // root: when several
//   archive.snapshots({ tags, after, before, host });    // array, oldest first
//   archive.unreadableSnapshots();                        // [{ id, reason }]: left out above
//   await archive.verify("quick" | "standard" | "full", onProgress);
//   archive.restore(snapshotId, item);                    // ReadableStream<Uint8Array>
//   await archive.requiredFiles(snapshotId, item);        // { files, totalBytes, missing, complete }
//
// Each archive runs the Rust engine (engine.js + engine_bg.wasm) in its own Web Worker that
// reads only the byte ranges it needs from the File objects, so neither the repository nor a
// restored item is ever held whole in memory. Errors are Error objects whose `name` is the
// class name the Python package uses (WrongPassphraseError, CorruptionError, …).

import initEngine, { engineTime, selectSnapshots } from "./engine.js";

const workerUrl = new URL("./worker.js", import.meta.url);
let engineReady = null;

/** Load the engine on the page too (each archive's worker loads its own): the page filters
 * snapshot lists with it, by the engine's rule. `Archive.open` calls it when needed. */
export default async function init() {
  engineReady ??= initEngine();
  await engineReady;
}

function remoteError({ name, message, roots }) {
  const err = new Error(message);
  err.name = name;
  if (roots !== undefined) err.roots = roots;
  return err;
}

/** A time argument as the engine reads it (RFC 3339): such strings as they are, `Date`
 * objects and the other forms `Date.parse` reads converted; `null` when not given. */
function toTime(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "string" && engineTime(value) !== undefined) return value;
  const t = value instanceof Date ? value.getTime() : Date.parse(value);
  if (Number.isNaN(t)) throw Object.assign(new Error(`not a time: ${value}`), { name: "InvalidArgumentError" });
  return new Date(t).toISOString();
}

export class Archive {
  #worker;
  #pending = new Map();
  #next = 1;
  #snapshots = "[]"; // JSON text, as the engine listed them
  #unreadable = [];
  #keys = [];

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = (event) => {
      const { id, result, error, progress } = event.data;
      const call = this.#pending.get(id);
      if (!call) return;
      if (progress !== undefined) {
        call.onProgress?.(progress);
        return;
      }
      this.#pending.delete(id);
      if (error) call.reject(remoteError(error));
      else call.resolve(result);
    };
    worker.onerror = (event) => {
      const err = remoteError({ name: "Error", message: event.message || "the engine worker failed" });
      for (const call of this.#pending.values()) call.reject(err);
      this.#pending.clear();
    };
  }

  #call(op, args, onProgress) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args });
    });
  }

  /** Open a repository from a FileList / File[] (a whole folder, or a flat download). The
   * repository is the folder holding `config.json`; when the selection holds several, `root`
   * names the one to open (one of the `roots` of the `MultipleRepositoriesError` thrown
   * without it). A selection without any repository throws `RepositoryNotFoundError`. */
  static async open(files, passphrase, { root } = {}) {
    await init();
    const worker = new Worker(workerUrl, { type: "module" });
    const archive = new Archive(worker);
    const entries = Array.from(files, (file) => ({ path: file.webkitRelativePath || file.name, file }));
    try {
      const opened = await archive.#call("open", { entries, passphrase: passphrase ?? null, root: root ?? null });
      archive.#snapshots = opened.snapshots;
      archive.#unreadable = opened.unreadable;
      archive.#keys = opened.keys;
      archive.root = opened.root;
    } catch (err) {
      worker.terminate();
      throw err;
    }
    return archive;
  }

  /** Repository paths of the selected files. */
  get files() {
    return [...this.#keys];
  }

  /** Snapshots with all `tags` (and made by `host`, if given), created in [after, before]
   * (inclusive), oldest first. `host` is `null` for snapshots from before hosts were recorded. */
  snapshots({ tags = {}, after, before, host } = {}) {
    const filter = { tags, after: toTime(after), before: toTime(before), host: host ?? null };
    return JSON.parse(selectSnapshots(this.#snapshots, JSON.stringify(filter)));
  }

  /** Snapshots whose manifest cannot be read (damaged or truncated), left out of
   * `snapshots()`: `[{ id, reason }]`. Every other snapshot is listed and restores. */
  unreadableSnapshots() {
    return this.#unreadable.map((u) => ({ ...u }));
  }

  /** Verify: resolves to { ok, errors: [{kind, pack, chunk, snapshot, message}], stats }. */
  verify(level = "standard", onProgress) {
    return this.#call("verify", { level }, onProgress);
  }

  /** The repository files restoring `item` (or the whole snapshot) needs. */
  requiredFiles(snapshotId, item) {
    return this.#call("requiredFiles", { snapshot: snapshotId, item: item ?? null });
  }

  /** A stream of the item's bytes; every chunk is verified before it is delivered. */
  restore(snapshotId, item, onProgress) {
    let handle = null;
    let size = 0;
    let done = 0;
    return new ReadableStream(
      {
        start: async () => {
          ({ handle, size } = await this.#call("restoreOpen", { snapshot: snapshotId, item }));
        },
        pull: async (controller) => {
          const chunk = await this.#call("restoreNext", { handle });
          if (chunk === null) {
            handle = null;
            onProgress?.(1);
            controller.close();
            return;
          }
          done += chunk.byteLength;
          onProgress?.(size ? done / size : 1);
          controller.enqueue(chunk);
        },
        cancel: async () => {
          if (handle !== null) await this.#call("restoreClose", { handle });
        },
      },
      { highWaterMark: 1 },
    );
  }

  /** Stop the worker. */
  close() {
    this.#worker.terminate();
  }
}
