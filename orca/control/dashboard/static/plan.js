/* Plan page: a JSONL file (picked or dropped) and a deadline in, the planner's table out; then submit it as a job. */
"use strict";

(() => {
  const {el, setRows, money, duration, label, api, show, setText} = orca;
  const form = document.getElementById("plan-form");
  const fileInput = document.getElementById("plan-file");
  const drop = document.getElementById("drop");
  const submitJob = document.getElementById("job-submit");

  function formData() {
    const data = new FormData(form);
    if (!data.get("model")) data.delete("model");
    if (!data.get("gpu")) data.delete("gpu");
    return data;
  }

  function describe(e) {
    const issues = (e.body && e.body.error && e.body.error.errors) || [];
    const lines = issues.slice(0, 10).map(i => (i.line ? `line ${i.line}: ` : "") + (i.message || i.code));
    return [e.message, ...lines].join("\n");
  }

  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, ev => { ev.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, ev => { ev.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", ev => {
    if (ev.dataTransfer && ev.dataTransfer.files.length) {
      fileInput.files = ev.dataTransfer.files;
      fileInput.dispatchEvent(new Event("change"));
    }
  });
  form.addEventListener("change", () => { submitJob.disabled = true; });

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    show("plan-error", "");
    const button = document.getElementById("plan-submit");
    button.disabled = true;
    try {
      const r = await api("/dashboard/api/plan", {method: "POST", body: formData()});
      const rows = r.data.map(p => el("tr", {},
        el("td", {}, `${p.gpus_per_replica}x${p.gpu}`), el("td", {}, `${p.tp}/${p.pp}`), el("td", {}, label(p.market)),
        el("td", {}, p.region || "–"), el("td", {class: "num"}, p.replicas), el("td", {class: "num"}, duration(p.expected_finish_s)),
        el("td", {class: "num"}, money(p.expected_cost_usd)), el("td", {class: "num"}, p.risk.toFixed(2))));
      setRows(document.getElementById("plan-body"), rows, "No plan meets the deadline.");
      setText("plan-summary", `${r.n_requests.toLocaleString()} requests, ~${r.est_prompt_tokens.toLocaleString()} prompt + ` +
        `${r.est_output_tokens.toLocaleString()} output tokens; deadline ${document.getElementById("plan-deadline").value}. Cheapest first.`);
      document.getElementById("plan-result").hidden = false;
      submitJob.disabled = r.data.length === 0;
    } catch (e) {
      document.getElementById("plan-result").hidden = true;
      show("plan-error", describe(e));
    } finally {
      button.disabled = false;
    }
  });

  submitJob.addEventListener("click", async () => {
    submitJob.disabled = true;
    show("plan-error", "");
    try {
      const data = formData();
      data.delete("markets");
      const job = await api("/dashboard/api/jobs", {method: "POST", body: data});
      location.assign("/jobs/" + encodeURIComponent(job.id));
    } catch (e) {
      show("plan-error", describe(e));
      submitJob.disabled = false;
    }
  });
})();
