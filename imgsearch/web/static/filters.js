// The filter panel: facet links are plain links (they add or remove a filter word); the date
// range form adds after:FROM and before:(the month after TO) to the query in the search box.

const form = document.querySelector("#filters form.dates");

function nextMonth(value) {
  const [year, month] = value.split("-").map(Number);
  return month === 12 ? `${year + 1}-01` : `${year}-${String(month + 1).padStart(2, "0")}`;
}

form?.addEventListener("submit", (event) => {
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
