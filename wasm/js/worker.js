// The worker that runs the engine. It reads exactly the byte ranges the engine asks for from
// the selected File objects with FileReaderSync, so memory stays bounded whatever their size.
import initEngine, { Engine } from "./engine.js";

const ready = initEngine();
const reader = new FileReaderSync();
let engine = null;
let files = new Map(); // repository key -> File

function read(key, offset, length) {
  const file = files.get(key);
  if (!file) throw new Error(`${key} is not among the selected files`);
  return new Uint8Array(reader.readAsArrayBuffer(file.slice(offset, offset + length)));
}

const ops = {
  open({ entries, passphrase, root }) {
    // The repository folder within the selection: found by its config.json, never guessed
    // from folder names (a repository may sit in a folder called "snapshots").
    const chosen = Engine.chooseRoot(entries.map((e) => e.path), root ?? undefined);
    files = new Map();
    const paths = [];
    const sizes = [];
    for (const { path, file } of entries) {
      const key = Engine.repositoryKey(path, chosen);
      if (key === undefined) continue;
      files.set(key, file);
      paths.push(path);
      sizes.push(file.size);
    }
    engine?.free();
    engine = Engine.open(paths, sizes, read, passphrase || undefined, chosen);
    return {
      snapshots: engine.snapshots("{}"),
      unreadable: JSON.parse(engine.unreadable()),
      keys: [...files.keys()],
      root: chosen ?? null,
    };
  },
  verify({ level }, id) {
    return JSON.parse(engine.verify(level, (fraction) => self.postMessage({ id, progress: fraction })));
  },
  requiredFiles({ snapshot, item }) {
    return JSON.parse(engine.requiredFiles(snapshot, item ?? undefined));
  },
  restoreOpen({ snapshot, item }) {
    const handle = engine.restoreOpen(snapshot, item);
    return { handle, size: engine.restoreSize(handle) };
  },
  restoreNext({ handle }) {
    return engine.restoreNext(handle) ?? null;
  },
  restoreClose({ handle }) {
    engine.restoreClose(handle);
    return null;
  },
};

self.onmessage = async (event) => {
  const { id, op, args } = event.data;
  try {
    await ready;
    if (op !== "open" && engine === null) throw new Error("no repository is open");
    const result = ops[op](args, id);
    self.postMessage({ id, result }, result instanceof Uint8Array ? [result.buffer] : []);
  } catch (err) {
    self.postMessage({
      id,
      error: { name: err?.name ?? "Error", message: err?.message ?? String(err), roots: err?.roots },
    });
  }
};
