// An album's page: remove an example (POST with the token); the grid itself is grid.js.
import { post, toast } from "./app.js";

const album = document.querySelector("h1[data-album]").dataset.album;

document.querySelector(".examples")?.addEventListener("click", async (event) => {
  const button = event.target.closest("button.remove");
  if (!button) return;
  try {
    const body = JSON.stringify({ album, ids: [Number(button.dataset.id)] });
    const r = await post("/api/albums/remove", body, { "Content-Type": "application/json" });
    toast(`Album ${r.name}: ${r.photos} photos`);
    document.body.dataset.album = `${r.name}:${r.like}:${r.unlike}`;
    setTimeout(() => location.reload(), 800);
  } catch (err) {
    toast(err.message);
  }
});
