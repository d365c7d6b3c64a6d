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
  try {
    archive = await Archive.open(files, $("#passphrase").value);
    $("#open-status").textContent = `${archive.snapshots().length} snapshots, ${archive.files.length} files`;
    renderSnapshots();
  } catch (err) {
    $("#open-status").textContent = "";
    showError(err);
  }
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

async function restore(snapshot, item) {
  showError(null);
  const message = $("#restore-message");
  const progress = $("#restore-progress");
  const list = $("#required-files");
  list.replaceChildren();
  try {
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
    const parts = [];
    const reader = archive.restore(snapshot, item, (f) => { progress.value = f; }).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // Hand each piece to the browser's blob store at once, so the page keeps no copy.
      parts.push(new Blob([value]));
    }
    const blob = new Blob(parts, { type: "application/octet-stream" });
    const url = URL.createObjectURL(blob);
    const a = element("a", { href: url, download: item.split("/").pop() });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    message.textContent = `restored ${item} (${humanSize(blob.size)}), every chunk verified`;
  } catch (err) {
    if (!list.children.length) message.textContent = "";
    showError(err);
  } finally {
    progress.hidden = true;
  }
}

await init();
$("#open").addEventListener("click", openRepository);
$("#verify").addEventListener("click", verify);
$("#snapshots").addEventListener("click", (event) => {
  const button = event.target.closest("button.restore");
  if (button) restore(button.dataset.snapshot, button.dataset.item);
});
document.body.dataset.ready = "true";
