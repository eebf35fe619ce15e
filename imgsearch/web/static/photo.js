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
document.body.dataset.ready = "photo"; // the page answers keys from here on (tests wait for it)
