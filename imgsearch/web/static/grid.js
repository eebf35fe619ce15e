// The search grid: infinite scroll over the cursor, selection, keyboard, drop/paste an example.
import { copyText, download, post, toast } from "./app.js";

const grid = document.getElementById("grid");
const bar = document.getElementById("selection");
const cells = () => [...grid.querySelectorAll(".hit")];
const selected = new Set();
let anchor = null; // the cell a shift-click range starts from

// ---- infinite scroll: each fragment ends with the sentinel of the next page ----------------
const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) if (entry.isIntersecting) loadMore(entry.target);
}, { rootMargin: "600px" });

async function loadMore(sentinel) {
  if (sentinel.dataset.loading) return;
  sentinel.dataset.loading = "1";
  observer.unobserve(sentinel);
  try {
    const response = await fetch(sentinel.dataset.fragment, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const html = await response.text();
    const doc = new DOMParser().parseFromString(`<div>${html}</div>`, "text/html");
    sentinel.replaceWith(...doc.body.firstChild.childNodes);
    watch();
  } catch (err) {
    sentinel.textContent = `Could not load more: ${err.message}`;
    delete sentinel.dataset.loading;
  }
}

function watch() {
  grid.querySelectorAll(".more:not([data-loading])").forEach((s) => observer.observe(s));
}
watch();

// ---- selection: click, Ctrl/Cmd-click toggles, shift-click range, Ctrl/Cmd-A ----------------
function paint() {
  for (const cell of cells()) cell.classList.toggle("selected", selected.has(cell.dataset.id));
  bar.hidden = selected.size === 0;
  bar.querySelector(".count").textContent = `${selected.size} selected`;
  if (selected.size) albumNames();
}

let named = false; // the album name box suggests the library's albums, fetched once
async function albumNames() {
  const list = document.getElementById("album-names");
  if (named || !list) return;
  named = true;
  const response = await fetch("/albums.json");
  if (!response.ok) return;
  for (const a of (await response.json()).albums) list.append(new Option(a.name));
}

async function addToAlbum(rows, as) {
  const box = document.getElementById("album-name");
  const album = box.value.trim();
  if (!album) {
    toast("Type the album's name first");
    box.focus();
    return;
  }
  try {
    const body = JSON.stringify({ album, ids: rows.map((r) => r.id), as });
    const r = await post("/api/albums/add", body, { "Content-Type": "application/json" });
    toast(`${r.created ? "Created" : "Updated"} album ${r.name}: ${r.photos} photos`);
    document.body.dataset.album = `${r.name}:${r.like}:${r.unlike}`; // tests wait for it
    if (document.body.classList.contains("page-album")) setTimeout(() => location.reload(), 800);
  } catch (err) {
    toast(err.message);
  }
}

function chosen() {
  return cells().filter((c) => selected.has(c.dataset.id));
}

grid.addEventListener("click", (event) => {
  const cell = event.target.closest(".hit");
  if (!cell || event.target.closest("a")) return;
  const all = cells();
  if (event.shiftKey && anchor) {
    const [a, b] = [all.indexOf(anchor), all.indexOf(cell)].sort((x, y) => x - y);
    if (!(event.ctrlKey || event.metaKey)) selected.clear();
    all.slice(a, b + 1).forEach((c) => selected.add(c.dataset.id));
  } else if (event.ctrlKey || event.metaKey) {
    selected.has(cell.dataset.id) ? selected.delete(cell.dataset.id) : selected.add(cell.dataset.id);
    anchor = cell;
  } else {
    const only = selected.size === 1 && selected.has(cell.dataset.id);
    selected.clear();
    if (!only) selected.add(cell.dataset.id);
    anchor = cell;
  }
  cell.focus();
  paint();
});

grid.addEventListener("dblclick", (event) => {
  const cell = event.target.closest(".hit");
  if (cell) location.href = cell.querySelector("a.open").href;
});

bar.addEventListener("click", async (event) => {
  const action = event.target.dataset.action;
  const rows = chosen().map((c) => ({
    id: Number(c.dataset.id), path: c.dataset.path, score: Number(c.dataset.score),
  }));
  if (action === "copy") {
    await copyText(rows.map((r) => r.path).join("\n"));
    toast(`Copied ${rows.length} paths`);
  } else if (action === "txt") {
    download("imgsearch-selection.txt", rows.map((r) => r.path).join("\n") + "\n", "text/plain");
  } else if (action === "json") {
    download("imgsearch-selection.json", JSON.stringify(rows, null, 2), "application/json");
  } else if (action === "like" || action === "unlike") {
    await addToAlbum(rows, action);
  } else if (action === "clear") {
    selected.clear();
    paint();
  }
});

// ---- keyboard: arrows move, Enter opens, Esc clears, Ctrl/Cmd-A selects all ------------------
function columns(all) {
  const top = all[0]?.offsetTop;
  const n = all.findIndex((c) => c.offsetTop !== top);
  return n === -1 ? all.length : n;
}

document.addEventListener("keydown", (event) => {
  const t = event.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement) return;
  const all = cells();
  if (!all.length) return;
  const here = all.indexOf(document.activeElement);
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a") {
    event.preventDefault();
    all.forEach((c) => selected.add(c.dataset.id));
    paint();
    return;
  }
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(all), ArrowUp: -columns(all) };
  if (event.key in step) {
    event.preventDefault();
    const next = here === -1 ? 0 : Math.min(all.length - 1, Math.max(0, here + step[event.key]));
    all[next].focus();
    all[next].scrollIntoView({ block: "nearest" });
  } else if (event.key === "Enter" && here !== -1) {
    location.href = all[here].querySelector("a.open").href;
  } else if (event.key === "Escape") {
    selected.clear();
    paint();
  }
});

// ---- query by example: drop or paste a picture ---------------------------------------------
const drop = document.getElementById("drop") || document.createElement("div");

async function searchByExample(file) {
  if (!file || !file.type.startsWith("image/")) {
    toast("That is not a picture");
    return;
  }
  toast("Reading the picture…");
  try {
    const form = new FormData();
    form.append("image", file);
    const result = await post("/api/example", form);
    location.href = result.url;
  } catch (err) {
    toast(err.message);
  }
}

document.addEventListener("dragover", (event) => {
  if ([...event.dataTransfer.types].includes("Files")) {
    event.preventDefault();
    drop.hidden = false;
  }
});
drop.addEventListener("dragleave", () => { drop.hidden = true; });
document.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.hidden = true;
  searchByExample(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) searchByExample(item.getAsFile());
});

// Focus the first result when there is no query to type; else the search box keeps focus.
if (!document.getElementById("q").value && cells().length) cells()[0].focus();
