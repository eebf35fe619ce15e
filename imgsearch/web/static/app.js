// imgsearch serve: shared bits (token, POST, toast, copy) and the page's own module.
// Plain ES modules, no build step; part of imgsearch (Apache-2.0).

export const token = document.querySelector('meta[name="imgsearch-token"]').content;

export async function post(url, body, headers = {}) {
  const response = await fetch(url, {
    method: "POST", body, headers: { "X-Imgsearch-Token": token, ...headers },
  });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

let toastTimer = 0;
export function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 2500);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function typing(event) {
  const t = event.target;
  return t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t.isContentEditable;
}

document.addEventListener("keydown", (event) => {
  const box = document.getElementById("q");
  if (event.key === "/" && !typing(event)) {
    event.preventDefault();
    box.focus();
    box.select();
  } else if (event.key === "Escape" && event.target === box) {
    box.blur();
  }
});

if (document.body.classList.contains("page-search")) import("./grid.js");
if (document.getElementById("filters")) import("./filters.js");
if (document.body.classList.contains("page-album")) import("./album.js");
if (document.body.classList.contains("page-photo")) import("./photo.js");
