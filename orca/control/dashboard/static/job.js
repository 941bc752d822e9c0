/* Job page: progress and cost charts (uPlot) with their numbers, pools, replicas, swaps, events;
   cancel, swap (with the plan for the remaining work shown first) and downloads. Refreshed every poll period. */
"use strict";

(() => {
  const {el, setRows, setText, money, duration, clock, ago, pct, label, api, poll, show} = orca;
  const root = document.getElementById("job");
  const jobId = root.dataset.jobId;
  const base = "/dashboard/api/jobs/" + encodeURIComponent(jobId);
  const TERMINAL = ["completed", "failed", "cancelled", "expired"];
  const LIVE_REPLICA = ["provisioning", "starting", "running", "draining"];
  const samples = [];          // every sample seen so far, oldest first
  let last = null;             // the latest detail from the server

  // -- charts ---------------------------------------------------------------------------
  const css = getComputedStyle(document.documentElement);
  const color = name => css.getPropertyValue(name).trim();
  const BLUE = "#0a66c2", GREY = "#8c959f", RED = color("--bad") || "#c62828";

  /** A uPlot plugin marking the deadline: a vertical line, or an arrow at the right edge when it lies beyond the chart. */
  function marker(get) {
    return {hooks: {draw: u => {
      const t = get();
      if (t === null || t === undefined) return;
      const x = u.valToPos(t, "x", true);
      const right = u.bbox.left + u.bbox.width;
      const ctx = u.ctx, px = devicePixelRatio;
      ctx.save();
      ctx.fillStyle = ctx.strokeStyle = RED;
      ctx.font = `${12 * px}px system-ui, sans-serif`;
      ctx.textAlign = "right";
      if (x > right + 1) {
        const text = `deadline ${clock(t)} →`, y = u.bbox.top + u.bbox.height - 6 * px;
        const w = ctx.measureText(text).width;
        ctx.fillStyle = "rgba(255,255,255,.85)";
        ctx.fillRect(right - w - 8 * px, y - 13 * px, w + 6 * px, 17 * px);
        ctx.fillStyle = RED;
        ctx.fillText(text, right - 4 * px, y);
      } else if (x >= u.bbox.left - 1) {
        ctx.lineWidth = 2 * px;
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.fillText("deadline", x - 4 * px, u.bbox.top + 12 * px);
      }
      ctx.restore();
    }}};
  }

  /** x range: the job's points (start to planned or expected finish) and the deadline, unless the deadline is
      so far off that the job would be a sliver at the left; then the deadline is an arrow at the right edge. */
  function xRange(u, min, max) {
    const d = last ? last.job.deadline_at : null;
    let lo = min ?? (d !== null ? d - 60 : 0);
    let hi = max ?? lo + 60;
    const span = Math.max(hi - lo, 30);
    hi = lo + span * 1.05;
    if (d !== null && d - lo <= 4 * span) hi = Math.max(hi, d + span * 0.02);
    return [lo, hi];
  }

  function makeChart(id, series, yOpts, plugins) {
    const node = document.getElementById(id);
    const width = () => Math.max(240, node.clientWidth);
    const chart = new uPlot({
      width: width(), height: 220, legend: {show: false}, cursor: {drag: {x: true, y: false}},
      scales: {x: {time: true, range: xRange}, y: yOpts.scale},
      axes: [{space: 70}, {values: yOpts.values, size: 64}],
      series: [{}, ...series], plugins: plugins || [],
    }, [[], ...series.map(() => [])], node);
    new ResizeObserver(() => chart.setSize({width: width(), height: 220})).observe(node);
    return chart;
  }

  const progressChart = makeChart("progress-chart", [
    {label: "done", stroke: BLUE, width: 2, fill: "rgba(10,102,194,.08)"},
    {label: "plan", stroke: GREY, width: 2, dash: [6, 5], spanGaps: true, points: {show: false}},
  ], {scale: {range: [0, 1]}, values: (u, vals) => vals.map(v => Math.round(v * 100) + "%")},
  [marker(() => last && last.job.deadline_at)]);

  const costChart = makeChart("cost-chart", [
    {label: "cost", stroke: BLUE, width: 2, fill: "rgba(10,102,194,.08)"},
    {label: "projected", stroke: GREY, width: 2, dash: [6, 5], spanGaps: true, points: {show: false}},
  ], {scale: {range: (u, min, max) => [0, Math.max(0.01, max || 0) * 1.1]}, values: (u, vals) => vals.map(v => money(v))},
  [marker(() => last && last.job.deadline_at)]);

  /** Aligned uPlot data from points {t: {series index: value}}. */
  function aligned(points, nSeries) {
    const xs = Object.keys(points).map(Number).sort((a, b) => a - b);
    const cols = [xs];
    for (let i = 0; i < nSeries; i++) cols.push(xs.map(x => points[x][i] ?? null));
    return cols;
  }

  function put(points, t, i, v) {
    if (t === null || t === undefined || v === null || v === undefined) return;
    (points[t] = points[t] || {})[i] = v;
  }

  function drawCharts(d) {
    const job = d.job, row = d.row, live = !TERMINAL.includes(job.status);
    const p = {}, c = {};
    for (const s of samples) { put(p, s.t, 0, s.fraction); put(c, s.t, 0, s.cost_usd); }
    if (live && job.progress.chunks_total) {                 // the line reaches "now"
      put(p, d.now, 0, row.fraction);
      put(c, d.now, 0, job.cost_usd);
    }
    if (d.plan_line) { put(p, d.plan_line.t0, 1, 0); put(p, d.plan_line.t1, 1, 1); }
    if (live && job.projected_cost_usd !== null && job.eta_s !== null) {
      put(c, d.now, 1, job.cost_usd);
      put(c, d.now + job.eta_s, 1, job.projected_cost_usd);
    }
    progressChart.setData(aligned(p, 2));
    costChart.setData(aligned(c, 2));
  }

  // -- numbers, tables ----------------------------------------------------------------------
  function drawNumbers(d) {
    const job = d.job, row = d.row, live = !TERMINAL.includes(job.status);
    const status = document.getElementById("job-status");
    status.dataset.status = job.status;
    setText("job-status", label(job.status));
    const track = document.getElementById("job-track");
    track.dataset.state = row.track.state;
    setText("job-track", row.track.label);
    document.getElementById("job-progress").value = row.fraction;
    setText("n-percent", pct(row.fraction));
    setText("n-requests", row.requests_total ? `${row.requests_done.toLocaleString()} / ${row.requests_total.toLocaleString()}` +
      (row.requests_note ? ` (${row.requests_note})` : "") : "–");
    setText("n-started", job.in_progress_at ? clock(job.in_progress_at) : "–");
    setText("n-planned", d.plan_line ? clock(d.plan_line.t1) : "–");
    setText("n-eta", live ? (row.track.finish_at ? clock(row.track.finish_at) + " (" + duration(job.eta_s) + ")" : "–")
      : (row.track.finish_at ? "ended " + clock(row.track.finish_at) : "–"));
    setText("n-deadline", clock(job.deadline_at) + " (" + ago(job.deadline_at, d.now) + ")");
    setText("n-cost", money(job.cost_usd));
    setText("n-projected", money(job.projected_cost_usd));
    setText("n-plan-cost", job.plan ? money(job.plan.expected_cost_usd) : "–");
    const burn = d.pools.filter(p => p.state === "active" || p.state === "draining")
      .reduce((sum, p) => sum + p.price_per_replica_hour * liveReplicas(p), 0);
    setText("n-burn", live ? money(burn) + "/h" : "–");
    setText("job-created", clock(job.created_at));
    if (job.model) setText("job-model", job.model);
    const why = ["failed", "expired", "cancelled", "cancelling"].includes(job.status);  // why it stopped early
    show("job-message", why ? job.message || "" : "");
  }

  function liveReplicas(pool) {
    return ["provisioning", "starting", "running", "draining"].reduce((n, s) => n + (pool.replicas[s] || 0), 0);
  }

  function counts(states) {
    const parts = Object.entries(states).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`);
    return parts.length ? parts.join(", ") : "none";
  }

  function drawTables(d) {
    setRows(document.getElementById("pools-body"), d.pools.map(p => el("tr", {},
      el("td", {class: "mono"}, p.key), el("td", {}, p.gpu), el("td", {}, label(p.market)), el("td", {}, p.region || "–"),
      el("td", {}, el("span", {class: "badge", "data-status": p.state === "active" ? "in_progress" : p.state}, p.state)),
      el("td", {}, counts(p.replicas)), el("td", {class: "num"}, p.chunks_completed), el("td", {class: "num"}, money(p.cost_usd)),
    )), ["validating", "planning"].includes(d.job.status) ? "No pools yet: the job is being validated and planned."
      : "No pools: this job started no workers.");
    setRows(document.getElementById("replicas-body"), d.replicas.map(r => el("tr", {},
      el("td", {class: "mono"}, r.id), el("td", {}, r.gpu || "–"), el("td", {}, label(r.market) || "–"), el("td", {}, r.region || "–"),
      el("td", {}, r.state), el("td", {class: "num"}, r.chunks_done), el("td", {class: "num"}, money(r.cost_usd)),
      el("td", {class: "small muted msg"}, r.message || ""),
    )), "No replicas.");
    const swaps = d.swaps.slice().reverse().map(s => {
      const active = s.state === "launching" || s.state === "draining";
      const costs = Object.entries(s.cost_usd || {}).map(([k, v]) => `${k} ${money(v)}`).join(", ");
      return el("li", {"data-state": s.state},
        el("strong", {class: "mono"}, `${s.from_pool} → ${s.to_pool}`), " ",
        el("span", {class: "badge", "data-status": s.state === "done" ? "completed" : active ? "in_progress" : "cancelled"}, s.state),
        el("div", {class: "small muted"}, `started ${clock(s.started_at)}` + (s.finished_at ? ` · ended ${clock(s.finished_at)}` : "")
          + (s.reason ? ` · ${s.reason}` : "") + (costs ? ` · ${costs}` : "")),
        active ? el("button", {type: "button", class: "secondary swap-back-out", "data-gpu": (d.pools.find(p => p.key === s.to_pool) || {}).gpu || s.to_pool},
          "Back out of this swap") : null);
    });
    document.getElementById("swaps").replaceChildren(...swaps);
    document.getElementById("swaps-empty").hidden = swaps.length > 0;
    setRows(document.getElementById("events-body"), d.events.slice().reverse().map(e => el("tr", {},
      el("td", {}, clock(e.t)), el("td", {}, label(e.kind)), el("td", {class: "msg"}, e.message))), "No events.");
  }

  function drawActions(d) {
    const job = d.job;
    const results = document.getElementById("dl-results"), errors = document.getElementById("dl-errors");
    const partial = !job.output_available;
    const ready = job.output_available || job.progress.chunks_total > 0;
    for (const [a, kind, name] of [[results, "results", "results"], [errors, "errors", "errors"]]) {
      const validationFailed = kind === "errors" && job.status === "failed" && !job.progress.chunks_total;
      const href = `${base}/${kind}` + (partial && !validationFailed ? "?partial=true" : "");
      if (a.getAttribute("href") !== href) a.setAttribute("href", href);
      a.textContent = `Download ${partial && !validationFailed && !TERMINAL.includes(job.status) ? "partial " : ""}${name}`;
      const usable = ready || validationFailed;
      a.setAttribute("aria-disabled", usable ? "false" : "true");
      if (usable) a.removeAttribute("tabindex"); else a.setAttribute("tabindex", "-1");
    }
    const swapping = d.swaps.some(s => s.state === "launching" || s.state === "draining");
    const swapBtn = document.getElementById("swap-open");
    swapBtn.disabled = job.status !== "in_progress" || swapping;
    swapBtn.title = swapping ? "a swap is in progress" : job.status !== "in_progress" ? "only a running job can swap" : "";
    document.getElementById("cancel-open").disabled = TERMINAL.includes(job.status) || job.status === "cancelling";
  }

  async function refresh() {
    const since = samples.length ? samples[samples.length - 1].t : null;
    const d = await api(base + (since !== null ? "?since=" + since : ""));
    for (const s of d.samples) if (!samples.length || s.t > samples[samples.length - 1].t) samples.push(s);
    last = d;
    drawNumbers(d);
    drawTables(d);
    drawActions(d);
    drawCharts(d);
    // Stop polling once nothing can change any more: the job has ended, its (partial) results are assembled,
    // its swap is closed and its workers are stopped (the controller does the last two on the ticks after the end).
    const ended = TERMINAL.includes(d.job.status) && (d.job.output_available || !d.job.progress.chunks_total);
    const swapping = d.swaps.some(s => s.state === "launching" || s.state === "draining");
    return !(ended && !swapping && !d.replicas.some(r => LIVE_REPLICA.includes(r.state)));
  }

  function actionError(e) { show("action-error", e ? e.message : ""); }

  // -- cancel -----------------------------------------------------------------------------------
  const cancelDialog = document.getElementById("cancel-dialog");
  document.getElementById("cancel-open").addEventListener("click", () => cancelDialog.showModal());
  cancelDialog.addEventListener("close", async () => {
    if (cancelDialog.returnValue !== "cancel") return;
    try { await api(base + "/cancel", {method: "POST"}); actionError(null); await refresh(); } catch (e) { actionError(e); }
  });

  // -- swap -----------------------------------------------------------------------------------------
  const swapDialog = document.getElementById("swap-dialog");
  const swapForm = document.getElementById("swap-form");
  const confirmBtn = document.getElementById("swap-confirm");
  const planBox = document.getElementById("swap-plan");

  function swapBody() {
    const f = new FormData(swapForm);
    return {gpu: f.get("gpu"), market: f.get("market"), tp: Number(f.get("tp")) || 1, pp: Number(f.get("pp")) || 1};
  }

  function invalidatePreview() {
    confirmBtn.disabled = true;
    planBox.replaceChildren();
  }

  document.getElementById("swap-open").addEventListener("click", () => { invalidatePreview(); swapDialog.showModal(); });
  document.getElementById("swap-close").addEventListener("click", () => swapDialog.close());
  for (const id of ["swap-gpu", "swap-market", "swap-tp", "swap-pp"]) {
    document.getElementById(id).addEventListener("change", invalidatePreview);
  }

  document.getElementById("swap-preview").addEventListener("click", async () => {
    const body = swapBody();
    planBox.replaceChildren(el("p", {class: "muted"}, "Planning…"));
    try {
      const r = await api(base + "/swap-preview", {method: "POST", json: body});
      const rows = r.plans.map(p => el("tr", {},
        el("td", {}, `${p.gpus_per_replica}x${p.gpu}`), el("td", {}, `${p.tp}/${p.pp}`), el("td", {}, label(p.market)),
        el("td", {}, p.region || "–"), el("td", {class: "num"}, p.replicas), el("td", {class: "num"}, duration(p.expected_finish_s)),
        el("td", {class: "num"}, money(p.expected_cost_usd)), el("td", {class: "num"}, p.risk.toFixed(2))));
      const table = el("table", {id: "swap-plan-table"},
        el("thead", {}, el("tr", {}, ...["GPU", "TP/PP", "Market", "Region", "Replicas", "ETA", "Cost", "Risk"].map(h => el("th", {scope: "col"}, h)))),
        el("tbody", {}));
      setRows(table.querySelector("tbody"), rows, "No plan fits.");
      const tp = document.getElementById("swap-tp"), pp = document.getElementById("swap-pp");
      let adjusted = null;
      if (r.plans.length && !r.plans.some(p => p.tp === body.tp && p.pp === body.pp)) {
        tp.value = r.plans[0].tp;                          // the cheapest plan's parallelism, shown before confirming
        pp.value = r.plans[0].pp;
        adjusted = `TP/PP set to ${r.plans[0].tp}/${r.plans[0].pp}, the cheapest plan's (${body.tp}/${body.pp} is not among the plans).`;
      }
      planBox.replaceChildren(
        el("p", {}, `Remaining work: about ${r.remaining_requests.toLocaleString()} requests, ${duration(r.time_left_s)} to the deadline.`),
        r.note ? el("p", {class: "notice small"}, r.note) : null,
        adjusted ? el("p", {class: "notice small"}, adjusted) : null,
        r.error ? el("p", {class: "error small"}, r.error) : null,
        el("div", {class: "table-wrap"}, table));
      confirmBtn.disabled = false;
    } catch (e) {
      planBox.replaceChildren(el("p", {class: "error"}, e.message));
    }
  });

  swapForm.addEventListener("submit", async ev => {
    ev.preventDefault();
    confirmBtn.disabled = true;
    try {
      await api(base + "/swap", {method: "POST", json: swapBody()});
      swapDialog.close();
      actionError(null);
      await refresh();
    } catch (e) {
      planBox.append(el("p", {class: "error"}, e.message));
    }
  });

  document.getElementById("swaps").addEventListener("click", async ev => {
    const btn = ev.target.closest(".swap-back-out");
    if (!btn) return;
    btn.disabled = true;
    try {
      await api(base + "/swap", {method: "POST", json: {gpu: btn.dataset.gpu, cancel: true}});
      actionError(null);
      await refresh();
    } catch (e) { actionError(e); }
  });

  poll(refresh, e => { if (e && e.status === 404) location.reload(); else show("refresh-error", e ? "Could not refresh: " + e.message : ""); });
})();
