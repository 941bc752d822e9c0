/* orca dashboard: helpers shared by the pages (plain JS, no framework). */
"use strict";

const orca = (() => {
  const pollMs = Number(document.body.dataset.pollMs) || 2000;
  const requestTimeoutMs = Number(document.body.dataset.requestTimeoutMs) || 15000;

  /** Build an element: el("td", {class: "num"}, "text", childNode, ...). Text is never parsed as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** Replace a tbody's rows (or show one "empty" row spanning the table). */
  function setRows(tbody, rows, emptyText) {
    const cols = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {colspan: cols, class: "muted empty"}, emptyText || "None."))]));
  }

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function money(v) {
    if (v === null || v === undefined) return "–";
    return "$" + Number(v).toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: v < 10 ? 4 : 2});
  }

  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + String(Math.floor(s % 86400 / 3600)).padStart(2, "0") + "h";
  }

  /** Local wall-clock time of a unix timestamp (date too when not today). */
  function clock(t) {
    if (t === null || t === undefined) return "–";
    const d = new Date(t * 1000);
    const today = new Date();
    const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
    return d.toDateString() === today.toDateString() ? time : d.toLocaleDateString() + " " + time;
  }

  function ago(t, now) {
    const d = now - t;
    return d >= 0 ? duration(d) + " ago" : "in " + duration(-d);
  }

  function pct(f) { return (100 * (f || 0)).toFixed(f > 0 && f < 0.1 ? 1 : 0) + "%"; }

  function label(s) { return String(s || "").replace(/_/g, " "); }

  /** fetch JSON from the dashboard's own API; a lost session goes back to the sign-in page. A read (GET) with
      no answer within requestTimeoutMs fails, and a poll retries it, instead of waiting forever; actions (an
      upload, a swap) are not cut short. */
  async function api(path, options) {
    const opts = Object.assign({credentials: "same-origin", headers: {}}, options || {});
    if (!opts.method || opts.method === "GET") opts.signal = AbortSignal.timeout(requestTimeoutMs);
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["content-type"] = "application/json";
      delete opts.json;
    }
    const r = await fetch(path, opts);
    if (r.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("signed out");
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const err = new Error((body && body.error && body.error.message) || r.statusText || "request failed");
      err.status = r.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  /** Call fn now and every pollMs until it returns false; a failing call is shown in `onError`, and retried. */
  function poll(fn, onError) {
    let timer = null;
    async function tick() {
      let again = true;
      try {
        again = (await fn()) !== false;
        if (onError) onError(null);
      } catch (e) {
        if (onError) onError(e);
      }
      if (again) timer = setTimeout(tick, pollMs);
    }
    tick();
    return () => clearTimeout(timer);
  }

  function show(id, text) {
    const node = document.getElementById(id);
    if (!node) return;
    node.hidden = !text;
    node.textContent = text || "";
  }

  /** A <progress> bar with a percentage beside it. */
  function bar(f, name) {
    return el("span", {class: "barcell"},
      el("progress", {max: 1, value: f || 0, "aria-label": name}), " ", el("span", {class: "pct"}, pct(f)));
  }

  return {el, setRows, setText, money, duration, clock, ago, pct, label, api, poll, show, bar, pollMs};
})();
