// The filter panel: fetched after the page (facets scan the library; the server caches them),
// facet values are plain links that add or remove a filter word; the date range form adds
// after:FROM and before:(the month after TO) to the query in the search box.

function nextMonth(value) {
  const [year, month] = value.split("-").map(Number);
  return month === 12 ? `${year + 1}-01` : `${year}-${String(month + 1).padStart(2, "0")}`;
}

function dates(form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const from = form.elements.from.value;
    const to = form.elements.to.value;
    const words = document.getElementById("q").value.trim().split(/\s+/)
      .filter((w) => w && !/^-?(after|before):/.test(w));
    if (from) words.push(`after:${from}`);
    if (to) words.push(`before:${nextMonth(to)}`);
    const params = new URLSearchParams(location.search);
    params.set("q", words.join(" "));
    params.delete("cursor");
    location.href = `/?${params}`;
  });
}

async function load(panel) {
  if (panel.dataset.fragment) {
    const response = await fetch(panel.dataset.fragment, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const loaded = doc.getElementById("filters");
    if (!loaded) return;
    panel.replaceWith(loaded);
    panel = loaded;
  }
  const form = panel.querySelector("form.dates");
  if (form) dates(form);
  panel.dataset.ready = "1"; // tests wait for it
}

load(document.getElementById("filters"));
