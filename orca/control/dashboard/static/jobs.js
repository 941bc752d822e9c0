/* Jobs page: the signed-in user's jobs, refreshed every poll period; filter by status. */
"use strict";

(() => {
  const {el, setRows, money, duration, clock, ago, label, api, poll, bar, setText} = orca;
  const select = document.getElementById("status-filter");
  const body = document.getElementById("jobs-body");

  function trackCell(row, now) {
    const t = row.track;
    const parts = [el("span", {class: "track", "data-state": t.state}, t.label)];
    if (!["done", "ended"].includes(t.state) && row.status !== "expired") {
      const eta = row.eta_s !== null ? "ETA " + duration(row.eta_s) : "ETA –";
      parts.push(el("br"), el("span", {class: "small muted"}, eta + " · deadline " + ago(row.deadline_at, now)));
    } else {
      parts.push(el("br"), el("span", {class: "small muted"}, "deadline " + clock(row.deadline_at)));
    }
    return parts;
  }

  function render(data) {
    const rows = data.jobs.map(row => {
      const requests = row.requests_total ? `${row.requests_done.toLocaleString()} / ${row.requests_total.toLocaleString()}` : "–";
      const cost = [money(row.cost_usd)];
      if (row.projected_cost_usd !== null && !["completed", "failed", "cancelled", "expired"].includes(row.status)) {
        cost.push(el("br"), el("span", {class: "small muted"}, "projected " + money(row.projected_cost_usd)));
      }
      return el("tr", {"data-job": row.id},
        el("td", {"data-label": "Job"}, el("a", {href: "/jobs/" + encodeURIComponent(row.id), class: "mono"}, row.id),
          row.model ? el("div", {class: "small muted"}, row.model) : null,
          data.all_users ? el("div", {class: "small muted"}, "user " + row.user) : null),
        el("td", {"data-label": "Status"}, el("span", {class: "badge", "data-status": row.status}, label(row.status))),
        el("td", {"data-label": "Progress"}, bar(row.fraction, "Progress of " + row.id)),
        el("td", {"data-label": "Requests", class: "num"}, requests,
          row.requests_note ? el("div", {class: "small muted"}, row.requests_note) : null),
        el("td", {"data-label": "ETA vs deadline"}, ...trackCell(row, data.now)),
        el("td", {"data-label": "Cost", class: "num"}, ...cost),
        el("td", {"data-label": "GPU / market"}, row.gpu || "–", el("div", {class: "small muted"}, label(row.market) || "")),
        el("td", {"data-label": "Created", class: "nowrap"}, el("time", {datetime: new Date(row.created_at * 1000).toISOString()}, ago(row.created_at, data.now))),
      );
    });
    const filter = select.value;
    setRows(body, rows, filter ? `No ${label(filter)} jobs.` : "No jobs yet: submit one with `orca submit FILE --deadline 2h` or from the Plan page.");
    setText("jobs-updated", `${data.jobs.length} job${data.jobs.length === 1 ? "" : "s"}` +
      (data.all_users ? " of all users (you are an admin)" : "") + ` · updated ${clock(data.now)}`);
  }

  async function refresh() {
    const q = select.value ? "?status=" + encodeURIComponent(select.value) : "";
    render(await api("/dashboard/api/jobs" + q));
  }

  select.addEventListener("change", () => {
    const url = new URL(location.href);
    if (select.value) url.searchParams.set("status", select.value); else url.searchParams.delete("status");
    history.replaceState(null, "", url);
    refresh().catch(() => {});
  });
  document.getElementById("filter").addEventListener("submit", e => e.preventDefault());

  poll(refresh, e => { if (e) setText("jobs-updated", "Could not refresh: " + e.message); });
})();
