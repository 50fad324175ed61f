// spade-tf demo page: paint class ids on a canvas, get a photo from POST /api/synthesize.
// Plain JS, no build step. The label map lives in `state.ids` (one-hot class ids, one per model pixel);
// the canvas only shows it. Requests carry it as a single-channel PNG of class values.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null, W: 0, H: 0, ids: null, base: null, classes: [], lut: null, classId: 0,
  tool: "brush", size: 8, undo: [], redo: [], seed: 0, style: null,
  inflight: false, dirty: false, timer: null, version: 0, resultBlob: null, resultUrl: null, shownIds: null,
  stroke: null,
};
const MAX_UNDO = 100;
const DEBOUNCE_MS = 120;

// ---- PNG encoding (grayscale 8/16 bit; zlib via CompressionStream) ---------------------------
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function zlibDeflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function encodeGrayPng(values, w, h) {
  let max = 0;
  for (let i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
  const depth = max > 255 ? 16 : 8;
  const bpp = depth / 8;
  const raw = new Uint8Array(h * (1 + w * bpp));
  let o = 0;
  for (let y = 0; y < h; y++) {
    raw[o++] = 0; // filter: none
    for (let x = 0; x < w; x++) {
      const v = values[y * w + x];
      if (depth === 16) raw[o++] = v >> 8;
      raw[o++] = v & 0xff;
    }
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, w);
  dv.setUint32(4, h);
  ihdr[8] = depth; // colour type 0 (grayscale), compression 0, filter 0, no interlace
  const parts = [Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]), pngChunk("IHDR", ihdr),
    pngChunk("IDAT", await zlibDeflate(raw)), pngChunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}

// The label map as the API and `spade synthesize` read it: pixel = class value (255 = don't care).
function labelPng() {
  const values = new Uint16Array(state.ids.length);
  for (let i = 0; i < values.length; i++) values[i] = state.classes[state.ids[i]].value;
  return encodeGrayPng(values, state.W, state.H);
}

// ---- drawing --------------------------------------------------------------------------------
const canvas = $("label-canvas");
const ctx = canvas.getContext("2d");
let imageData = null;

function render() {
  const px = imageData.data;
  const lut = state.lut;
  for (let i = 0; i < state.ids.length; i++) {
    const c = state.ids[i] * 3;
    px[i * 4] = lut[c]; px[i * 4 + 1] = lut[c + 1]; px[i * 4 + 2] = lut[c + 2]; px[i * 4 + 3] = 255;
  }
  ctx.putImageData(imageData, 0, 0);
}

function disc(cx, cy) {
  const r = state.size / 2;
  const erase = state.tool === "eraser";
  const { W, H, ids, base } = state;
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(W - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(H - 1, Math.ceil(cy + r));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= r * r) ids[y * W + x] = erase ? base[y * W + x] : state.classId;
    }
  }
  const x = Math.floor(cx), y = Math.floor(cy); // a size-1 brush still paints the pixel under it
  if (x >= 0 && x < W && y >= 0 && y < H) ids[y * W + x] = erase ? base[y * W + x] : state.classId;
}

function line(a, b) {
  const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(0.5, state.size / 4)));
  for (let s = 1; s <= steps; s++) disc(a[0] + (b[0] - a[0]) * s / steps, a[1] + (b[1] - a[1]) * s / steps);
}

function fill(cx, cy) {
  const { W, H, ids } = state;
  const x = Math.floor(cx), y = Math.floor(cy);
  if (x < 0 || x >= W || y < 0 || y >= H) return;
  const from = ids[y * W + x], to = state.classId;
  if (from === to) return;
  const stack = [y * W + x];
  ids[y * W + x] = to;
  while (stack.length) {
    const i = stack.pop();
    const px = i % W, py = (i - px) / W;
    const next = [px > 0 ? i - 1 : -1, px < W - 1 ? i + 1 : -1, py > 0 ? i - W : -1, py < H - 1 ? i + W : -1];
    for (const j of next) if (j >= 0 && ids[j] === from) { ids[j] = to; stack.push(j); }
  }
}

function toModel(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * state.W / r.width, (e.clientY - r.top) * state.H / r.height];
}

function pushUndo() {
  state.undo.push(state.ids.slice());
  if (state.undo.length > MAX_UNDO) state.undo.shift();
  state.redo = [];
  updateUndoButtons();
}

function sameMap(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function updateUndoButtons() {
  $("undo").disabled = !state.undo.length;
  $("redo").disabled = !state.redo.length;
}

function undo() {
  if (!state.undo.length) return;
  state.redo.push(state.ids);
  state.ids = state.undo.pop();
  updateUndoButtons(); render(); scheduleSynth();
}

function redo() {
  if (!state.redo.length) return;
  state.undo.push(state.ids);
  state.ids = state.redo.pop();
  updateUndoButtons(); render(); scheduleSynth();
}

canvas.addEventListener("contextmenu", (e) => {
  e.preventDefault();
  const [x, y] = toModel(e).map(Math.floor);
  if (x >= 0 && x < state.W && y >= 0 && y < state.H) selectClass(state.ids[y * state.W + x]);
});

canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 || !state.ids) return;
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  clearTimeout(state.timer);
  const p = toModel(e);
  pushUndo();
  if (state.tool === "fill") {
    fill(p[0], p[1]);
    endStroke();
    return;
  }
  state.stroke = p;
  disc(p[0], p[1]);
  render();
});

// brush outline that follows the pointer (brush and eraser)
function moveCursor(e) {
  const cursor = $("cursor");
  const r = canvas.getBoundingClientRect();
  cursor.hidden = state.tool === "fill";
  const d = state.size * r.width / state.W;
  cursor.style.width = cursor.style.height = `${d}px`;
  cursor.style.left = `${e.clientX - r.left}px`;
  cursor.style.top = `${e.clientY - r.top}px`;
}
canvas.addEventListener("pointerleave", () => { $("cursor").hidden = true; });

canvas.addEventListener("pointermove", (e) => {
  moveCursor(e);
  const p = toModel(e);
  const x = Math.floor(p[0]), y = Math.floor(p[1]);
  if (state.ids && x >= 0 && x < state.W && y >= 0 && y < state.H) {
    $("hover").textContent = `${x}, ${y}: ${state.classes[state.ids[y * state.W + x]].name}`;
  }
  if (!state.stroke) return;
  line(state.stroke, p);
  state.stroke = p;
  render();
});

function endStroke() {
  state.stroke = null;
  const before = state.undo[state.undo.length - 1];
  if (before && sameMap(before, state.ids)) { state.undo.pop(); updateUndoButtons(); return; }
  render();
  scheduleSynth();
}
canvas.addEventListener("pointerup", () => { if (state.stroke) endStroke(); });
canvas.addEventListener("pointercancel", () => { if (state.stroke) endStroke(); });

// ---- synthesis ------------------------------------------------------------------------------
function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function scheduleSynth(delay = DEBOUNCE_MS) {
  clearTimeout(state.timer);
  state.timer = setTimeout(synthesize, delay);
}

async function synthesize() {
  if (state.inflight) { state.dirty = true; return; }
  state.inflight = true;
  state.dirty = false;
  const form = new FormData();
  const sent = state.ids.slice();
  form.append("label", await labelPng(), "label.png");
  form.append("seed", String(state.seed));
  if (state.style) form.append("style", state.style, state.style.name || "style");
  const t0 = performance.now();
  setStatus("synthesizing…");
  try {
    const r = await fetch("/api/synthesize", { method: "POST", body: form });
    if (r.status === 503) {
      const wait = Number(r.headers.get("Retry-After") || 1);
      setStatus(`server busy, retrying in ${wait} s`, true);
      state.dirty = false;
      setTimeout(() => scheduleSynth(0), wait * 1000);
    } else if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (_) { /* not JSON */ }
      setStatus(`error ${r.status}: ${detail}`, true);
    } else {
      const blob = await r.blob();
      const img = $("result");
      const url = URL.createObjectURL(blob);
      img.src = url;
      await img.decode();
      if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
      state.resultUrl = url;
      state.resultBlob = blob;
      state.shownIds = sent;
      state.version += 1;
      img.dataset.version = String(state.version);
      $("download-photo").disabled = false;
      const total = performance.now() - t0;
      const model = Number(r.headers.get("X-Inference-Ms"));
      const style = state.style ? "style image" : state.info.use_vae ? `seed ${r.headers.get("X-Seed")}` : "";
      setStatus(`model ${model.toFixed(0)} ms · round trip ${total.toFixed(0)} ms${style ? " · " + style : ""}`);
    }
  } catch (err) {
    setStatus(`request failed: ${err}`, true);
  } finally {
    state.inflight = false;
    if (state.dirty) scheduleSynth(0);
  }
}

// ---- controls -------------------------------------------------------------------------------
function selectClass(id) {
  state.classId = id;
  for (const b of document.querySelectorAll("#palette button")) {
    b.classList.toggle("selected", Number(b.dataset.classId) === id);
  }
  if (state.tool === "eraser") setTool("brush");
}

function setTool(tool) {
  state.tool = tool;
  for (const r of document.querySelectorAll("input[name=tool]")) r.checked = r.value === tool;
}

function buildPalette() {
  const ul = $("palette");
  for (const c of state.classes) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.dataset.classId = String(c.id);
    b.dataset.name = c.name.toLowerCase();
    b.title = `id ${c.value} · rgb(${c.color.join(", ")})`;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${c.color.join(",")})`;
    b.append(sw, document.createTextNode(c.name));
    b.addEventListener("click", () => selectClass(c.id));
    li.append(b);
    ul.append(li);
  }
  if (state.classes.length > 16) {
    const f = $("palette-filter");
    f.hidden = false;
    f.addEventListener("input", () => {
      const q = f.value.trim().toLowerCase();
      for (const b of ul.querySelectorAll("button")) b.parentElement.hidden = q && !b.dataset.name.includes(q);
    });
  }
}

function buildStartMenu() {
  const sel = $("start");
  const blank = document.createElement("option");
  blank.value = "blank";
  blank.textContent = "blank (selected class)";
  sel.append(blank);
  state.info.examples.forEach((name, i) => {
    const o = document.createElement("option");
    o.value = String(i);
    o.textContent = name;
    sel.append(o);
  });
  if (state.info.examples.length) sel.value = "0";
}

async function loadStart() {
  const v = $("start").value;
  let ids;
  if (v === "blank") {
    ids = new Uint16Array(state.W * state.H).fill(state.classId);
  } else {
    const r = await fetch(`/api/examples/${v}`);
    const ex = await r.json();
    const bytes = Uint8Array.from(atob(ex.ids), (ch) => ch.charCodeAt(0));
    const dv = new DataView(bytes.buffer);
    ids = new Uint16Array(state.W * state.H);
    for (let i = 0; i < ids.length; i++) ids[i] = dv.getUint16(2 * i, true);
  }
  if (state.ids) pushUndo();
  state.ids = ids;
  state.base = ids.slice();
  render();
  scheduleSynth(0);
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function setupControls() {
  for (const r of document.querySelectorAll("input[name=tool]")) r.addEventListener("change", () => setTool(r.value));
  const size = $("brush-size");
  const syncSize = () => { state.size = Number(size.value); $("brush-size-out").textContent = size.value; };
  size.max = String(Math.max(8, Math.round(Math.max(state.W, state.H) / 2)));
  size.value = String(Math.max(1, Math.round(Math.max(state.W, state.H) / 10)));
  syncSize();
  size.addEventListener("input", syncSize);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("load-start").addEventListener("click", loadStart);
  $("download-label").addEventListener("click", async () => download(await labelPng(), "label.png"));
  $("download-photo").addEventListener("click", () => state.resultBlob && download(state.resultBlob, "photo.png"));

  const seed = $("seed");
  seed.addEventListener("change", () => {
    state.seed = Math.max(0, Math.min(2147483647, Math.floor(Number(seed.value) || 0)));
    seed.value = String(state.seed);
    scheduleSynth(0);
  });
  $("random-style").addEventListener("click", () => {
    state.seed = Math.floor(Math.random() * 2147483647);
    seed.value = String(state.seed);
    clearStyle(false);
    scheduleSynth(0);
  });
  const info = state.info;
  const file = $("style-file");
  if (!info.use_vae) {
    $("random-style").disabled = true;
    seed.disabled = true;
    file.disabled = true;
    $("style-note").textContent = "This model has no style input (trained without VAE): one label map gives one photo.";
  } else if (!info.has_encoder) {
    file.disabled = true;
    $("style-note").textContent = "No encoder.keras next to this model: style from image is unavailable.";
  }
  file.addEventListener("change", () => {
    if (!file.files.length) return;
    state.style = file.files[0];
    const thumb = $("style-thumb");
    thumb.src = URL.createObjectURL(state.style);
    thumb.hidden = false;
    $("clear-style").hidden = false;
    scheduleSynth(0);
  });
  $("clear-style").addEventListener("click", () => clearStyle(true));

  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== "radio" && e.target.type !== "range") return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); e.shiftKey ? redo() : undo(); }
    else if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); redo(); }
    else if (!e.ctrlKey && !e.metaKey && key === "b") setTool("brush");
    else if (!e.ctrlKey && !e.metaKey && key === "f") setTool("fill");
    else if (!e.ctrlKey && !e.metaKey && key === "e") setTool("eraser");
  });
}

function clearStyle(resynth) {
  state.style = null;
  $("style-file").value = "";
  $("style-thumb").hidden = true;
  $("clear-style").hidden = true;
  if (resynth) scheduleSynth(0);
}

async function init() {
  const r = await fetch("/api/info");
  const info = await r.json();
  state.info = info;
  state.W = info.width;
  state.H = info.height;
  state.classes = info.classes;
  state.lut = new Uint8Array(info.classes.length * 3);
  info.classes.forEach((c, i) => state.lut.set(c.color, i * 3));
  canvas.width = info.width;
  canvas.height = info.height;
  imageData = ctx.createImageData(info.width, info.height);
  $("model-info").textContent = `model ${info.model} · ${info.width}×${info.height} · ${info.classes.length} classes` +
    (info.use_vae ? " · multimodal (VAE)" : "");
  buildPalette();
  buildStartMenu();
  setupControls();
  selectClass(0);
  await loadStart();
  document.body.dataset.ready = "1";
}

// Hooks for scripts and the browser test.
// isSynced(): the photo shown was made from the label map as it is now.
const isSynced = () => !!state.shownIds && !state.inflight && !state.dirty && sameMap(state.shownIds, state.ids);
window.spadeDemo = { state, labelPng, synthesize, selectClass, setTool, undo, redo, isSynced };
init().catch((err) => setStatus(`cannot start: ${err}`, true));
