import init, { Archive } from "./pkg/containerarchive_wasm.js";

const $ = (sel) => document.querySelector(sel);
let archive = null;

function humanSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function showError(err) {
  const box = $("#error");
  box.textContent = err ? `${err.name}: ${err.message}` : "";
  box.hidden = !err;
}

function element(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  Object.assign(el, props);
  for (const child of children) el.append(child);
  return el;
}

function renderSnapshots() {
  const body = $("#snapshots tbody");
  body.replaceChildren();
  for (const s of archive.snapshots().reverse()) {
    const tr = element("tr");
    tr.dataset.id = s.id;
    const items = element("td");
    for (const item of s.items) {
      const button = element("button", { type: "button", className: "restore",
        textContent: `${item.name} (${humanSize(item.size)})` });
      button.dataset.snapshot = s.id;
      button.dataset.item = item.name;
      items.append(button);
    }
    tr.append(
      element("td", { textContent: s.createdAt }),
      element("td", {}, [element("code", { textContent: s.id.slice(0, 12) })]),
      element("td", { className: "host", textContent: s.host ?? "(unknown)" }),
      element("td", { textContent: Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join(" ") }),
      items,
      element("td", { className: "num", textContent: humanSize(s.originalSize) }),
      element("td", { className: "num", textContent: humanSize(s.storedSize) }),
    );
    body.append(tr);
  }
  $("#snapshots-section").hidden = false;
  $("#verify-section").hidden = false;
}

async function openRepository() {
  showError(null);
  const files = [...$("#repo-files").files, ...$("#repo-flat-files").files];
  if (files.length === 0) {
    showError({ name: "Error", message: "select the repository folder (or its files) first" });
    return;
  }
  $("#open-status").textContent = "opening…";
  archive?.close();
  archive = null;
  $("#snapshots-section").hidden = true;
  $("#verify-section").hidden = true;
  const chooser = $("#repo-root");
  const root = $("#repo-root-label").hidden ? undefined : chooser.value;
  try {
    archive = await Archive.open(files, $("#passphrase").value, { root });
    const where = archive.root ? ` in ${archive.root}` : "";
    const unreadable = archive.unreadableSnapshots();
    const damage = unreadable.length === 0 ? "" :
      `; ${unreadable.length} snapshot(s) cannot be read and are not listed: ` +
      unreadable.map((u) => `${u.id} (${u.reason})`).join(", ") +
      " — `containerarchive repair` restores what it can";
    $("#open-status").textContent = `${archive.snapshots().length} snapshots, ${archive.files.length} files${where}${damage}`;
    renderSnapshots();
  } catch (err) {
    $("#open-status").textContent = "";
    if (err.name === "MultipleRepositoriesError") {
      // The folder above several repositories: let the user pick one, then Open again.
      chooser.replaceChildren(...err.roots.map((r) => element("option", { value: r, textContent: r || "(top level)" })));
      $("#repo-root-label").hidden = false;
      $("#open-status").textContent = `this folder holds ${err.roots.length} repositories: choose one, then Open`;
      return;
    }
    showError(err);
  }
}

function selectionChanged() {
  $("#repo-root-label").hidden = true;
  $("#repo-root").replaceChildren();
}

async function verify() {
  showError(null);
  const result = $("#verify-result");
  const progress = $("#verify-progress");
  result.removeAttribute("data-ok");
  result.replaceChildren("verifying…");
  progress.hidden = false;
  progress.value = 0;
  try {
    const r = await archive.verify($("#verify-level").value, (f) => { progress.value = f; });
    const st = r.stats;
    result.replaceChildren(
      element("p", { textContent: `${r.ok ? "OK" : `${r.errors.length} errors`}: ${st.snapshotsChecked} snapshots, `
        + `${st.packsChecked} packs, ${st.chunksChecked} chunks, ${st.groupsChecked} parity groups checked; `
        + `${humanSize(st.bytesRead)} read` }),
      element("ul", {}, r.errors.map((e) => element("li", {
        className: "verify-error",
        textContent: `${e.kind}: ${e.message}`,
      }))),
    );
    result.dataset.ok = String(r.ok);
  } catch (err) {
    result.replaceChildren();
    showError(err);
  } finally {
    progress.hidden = true;
  }
}

/** Where the page can, the restored item streams into a file the user picks (File System
 * Access API): memory stays at a few MiB whatever the item's size, and success is reported only
 * once the browser confirms the file is written. */
async function pickFile(name) {
  if (typeof window.showSaveFilePicker !== "function") return null;
  try {
    const handle = await window.showSaveFilePicker({ suggestedName: name });
    return { writable: await handle.createWritable(), written: 0 };
  } catch (err) {
    if (err.name === "AbortError") throw Object.assign(new Error("restore cancelled: no file was chosen"), { name: "AbortError" });
    throw err;
  }
}

async function saveToFile(stream, sink) {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await sink.writable.write(value);
      sink.written += value.byteLength;
    }
    await sink.writable.close(); // resolves only once the file holds every byte
  } catch (err) {
    await reader.cancel().catch(() => {});
    await sink.writable.abort().catch(() => {});
    throw err;
  }
}

/** Fallback: the item as a Blob handed to the browser's downloads. The browser keeps the
 * Blob (in memory, or spilled to disk) until the download ends; the page cannot see whether it
 * completed, so it never says it did. */
const BLOB_WARNING_BYTES = 512 << 20;
async function downloadBlob(stream, name, message) {
  const parts = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > BLOB_WARNING_BYTES && size - value.byteLength <= BLOB_WARNING_BYTES) {
      message.textContent = `restoring ${name}: over ${humanSize(BLOB_WARNING_BYTES)} — this browser cannot `
        + "stream to disk, so the item is gathered in the browser's memory first; very large items may fail";
    }
    // Hand each piece to the browser's blob store at once, so the page keeps no copy.
    parts.push(new Blob([value]));
  }
  const blob = new Blob(parts, { type: "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const a = element("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}

async function restore(snapshot, item) {
  showError(null);
  const message = $("#restore-message");
  const progress = $("#restore-progress");
  const list = $("#required-files");
  const name = item.split("/").pop();
  list.replaceChildren();
  let sink = null;
  try {
    // First, while the click still counts as the user's gesture (the picker requires one).
    sink = await pickFile(name);
    const plan = await archive.requiredFiles(snapshot, item);
    if (plan.missing.length > 0) {
      message.textContent = `${plan.missing.length} of the ${plan.files.length} files this restore needs `
        + `(${humanSize(plan.totalBytes)} in all) are not among the selected files:`;
      for (const path of plan.missing) list.append(element("li", { className: "missing", textContent: path }));
      throw Object.assign(new Error(`missing ${plan.missing.length} files: ${plan.missing.join(", ")}`),
        { name: "CorruptionError" });
    }
    message.textContent = `restoring ${item}…`;
    progress.hidden = false;
    progress.value = 0;
    const stream = archive.restore(snapshot, item, (f) => { progress.value = f; });
    if (sink) {
      await saveToFile(stream, sink);
      message.textContent = `restored ${item} (${humanSize(sink.written)}) to the chosen file, every chunk verified`;
    } else {
      const size = await downloadBlob(stream, name, message);
      message.textContent = `handed ${item} (${humanSize(size)}, every chunk verified) to the browser's downloads: `
        + "this browser cannot save a stream to disk, so check there that the download completed";
    }
  } catch (err) {
    await sink?.writable.abort().catch(() => {});
    if (!list.children.length) message.textContent = "";
    showError(err);
  } finally {
    progress.hidden = true;
  }
}

await init();
$("#open").addEventListener("click", openRepository);
$("#repo-files").addEventListener("change", selectionChanged);
$("#repo-flat-files").addEventListener("change", selectionChanged);
$("#verify").addEventListener("click", verify);
$("#snapshots").addEventListener("click", (event) => {
  const button = event.target.closest("button.restore");
  if (button) restore(button.dataset.snapshot, button.dataset.item);
});
document.body.dataset.ready = "true";
