// The photo page: open in file manager (POST with the token), copy path, Esc goes back.
import { copyText, post, toast } from "./app.js";

const photo = document.querySelector(".photo");

document.getElementById("reveal").addEventListener("click", async (event) => {
  try {
    await post(`/api/open/${event.target.dataset.id}`);
    toast("Opened in the file manager");
  } catch (err) {
    toast(err.message);
  }
});

document.getElementById("copy-path").addEventListener("click", async () => {
  await copyText(photo.dataset.path);
  toast("Path copied");
});

function back() {
  const from = document.referrer && new URL(document.referrer);
  if (from && from.origin === location.origin && history.length > 1) history.back();
  else location.href = "/";
}
document.getElementById("back").addEventListener("click", (event) => {
  event.preventDefault();
  back();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !(event.target instanceof HTMLInputElement)) back();
});
// ---- the explain heatmap: fetched on first toggle (it costs a batch of model calls) ------------
const heat = document.getElementById("heat");
const toggle = document.getElementById("toggle-heat");
if (heat && toggle) {
  const label = toggle.textContent;
  toggle.addEventListener("click", async () => {
    const on = toggle.getAttribute("aria-pressed") !== "true";
    if (on && !heat.src) {
      toggle.disabled = true;
      toggle.textContent = "Working out the heatmap…";
      try {
        const response = await fetch(toggle.dataset.json);
        const data = await response.json();
        if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
        await new Promise((ok, fail) => {
          heat.onload = ok;
          heat.onerror = () => fail(new Error("the heatmap did not load"));
          heat.src = data.overlay;
        });
        const note = document.getElementById("heat-note");
        note.textContent = `“${data.query}” scores ${data.score.toFixed(3)}; red is where it comes from.`;
        note.hidden = false;
      } catch (err) {
        toast(err.message);
        toggle.disabled = false;
        toggle.textContent = label;
        return;
      }
      toggle.disabled = false;
    }
    heat.hidden = !on;
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Hide the heatmap" : label;
  });
}

document.body.dataset.ready = "photo"; // the page answers keys from here on (tests wait for it)
