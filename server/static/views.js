/* Overview, traces list, breakers, alerts and reports views. */
"use strict";

(function (AW) {
  const { h, api, fmt, badge } = AW;
  const DAY_MS = 86400000;
  const PERIODS = [["24h", 1], ["7d", 7], ["30d", 30], ["all", 0]];

  function kpi(id, label, value) {
    return h("div", { class: "kpi", id }, h("div", { class: "label", text: label }), h("div", { class: "value", text: value }));
  }

  AW.views = {};

  AW.views.overview = async function (root, route) {
    const period = route.params.get("period") || "7d";
    const days = (PERIODS.find((p) => p[0] === period) || PERIODS[1])[1];
    const from = days ? new Date(Date.now() - days * DAY_MS).toISOString() : null;
    const q = from ? `?from=${encodeURIComponent(from)}` : "";
    const [metrics, daily, agents, models, recent] = await Promise.all([
      api(`/api/metrics${q}`),
      api(`/api/cost/daily?days=${days || 30}`),
      api(`/api/cost/by-agent${q}`),
      api(`/api/cost/by-model${q}`),
      api("/api/traces?limit=8"),
    ]);
    root.appendChild(h("h1", { text: "Overview" }));
    root.appendChild(h("div", { class: "pager" }, "Period:", PERIODS.map(([name]) =>
      h("a", { href: `#/overview?period=${name}`, class: name === period ? "active" : null, text: name === period ? `[${name}]` : name }))));
    root.appendChild(h("div", { class: "kpis" },
      kpi("kpi-traces", "Traces", fmt.int(metrics.traces)),
      kpi("kpi-calls", "LLM calls", fmt.int(metrics.llm_calls)),
      kpi("kpi-tokens", "Tokens", fmt.int(metrics.total_tokens)),
      kpi("kpi-cost", "Cost", fmt.cost(metrics.cost_usd)),
      kpi("kpi-p50", "Latency p50", fmt.ms(metrics.latency_p50_ms)),
      kpi("kpi-p95", "Latency p95", fmt.ms(metrics.latency_p95_ms)),
      kpi("kpi-errors", "Error rate", fmt.pct(metrics.error_rate)),
      kpi("kpi-blocked", "Blocked calls", fmt.int(metrics.blocked_calls))));
    root.appendChild(h("div", { class: "panel", id: "cost-over-time" }, h("h2", { text: "Cost per day (UTC)" }),
      AW.columnChart(daily.days.map((d) => ({ label: d.date.slice(5), value: d.cost_usd })), fmt.cost)));
    root.appendChild(h("div", { class: "grid" },
      h("div", { class: "panel", id: "cost-by-agent" }, h("h2", { text: "Cost by agent" }),
        AW.barList(agents.agents.map((a) => ({ label: a.agent_name || a.agent_id || "(no agent)", value: a.cost_usd })), fmt.cost)),
      h("div", { class: "panel", id: "cost-by-model" }, h("h2", { text: "Cost by model" }),
        AW.barList(models.models.map((m) => ({ label: m.model, value: m.cost_usd })), fmt.cost))));
    root.appendChild(h("h2", { text: "Latest traces" }));
    root.appendChild(AW.traceTable(recent.traces));
  };

  AW.traceTable = function (traces, emptyText) {
    if (!traces.length) return h("div", { class: "empty", text: emptyText || "No traces yet. Point an SDK at this collector's /api/ingest." });
    return h("table", { class: "traces" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Start", "Duration", "Spans", "Tokens", "Cost", "Agents", "Models"].map((t) =>
        h("th", { class: ["Duration", "Spans", "Tokens", "Cost"].includes(t) ? "num" : null, text: t })))),
      h("tbody", {}, traces.map((t) => h("tr", { class: "clickable", "data-trace-id": t.trace_id, on: { click: () => { location.hash = `#/trace/${encodeURIComponent(t.trace_id)}`; } } },
        h("td", {}, h("a", { href: `#/trace/${encodeURIComponent(t.trace_id)}`, class: "trace-name", text: t.name || t.trace_id })),
        h("td", {}, badge(t.status)),
        h("td", { text: fmt.time(t.start_time_unix_nano) }),
        h("td", { class: "num", text: fmt.ms(t.duration_ms) }),
        h("td", { class: "num", text: fmt.int(t.span_count) }),
        h("td", { class: "num", text: fmt.int(t.total_tokens) }),
        h("td", { class: "num", text: fmt.cost(t.cost_usd) }),
        h("td", { class: "agents", text: t.agents.map((a) => a.agent_name || a.agent_id).join(", ") }),
        h("td", { class: "models", text: t.models.join(", ") })))));
  };

  function toLocalInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  }

  AW.views.traces = async function (root, route) {
    const p = route.params;
    const limit = 50;
    // Older pages follow the API's cursor: a page stays put while traces arrive (an offset would shift by every
    // new trace). `shown` is how many rows came before, for the "51–100 of N" label; `offset` links still work.
    const cursor = p.get("cursor");
    const offset = cursor ? 0 : Number(p.get("offset") || 0);
    const shown = cursor ? Number(p.get("shown") || 0) : offset;
    const query = new URLSearchParams();
    for (const name of ["search", "status", "agent_id", "model", "from", "to", "sort", "order"]) if (p.get(name)) query.set(name, p.get(name));
    query.set("limit", limit);
    if (cursor) query.set("cursor", cursor);
    else query.set("offset", offset);
    const [page, agents, models] = await Promise.all([
      api(`/api/traces?${query}`), api("/api/cost/by-agent"), api("/api/cost/by-model")]);
    root.appendChild(h("h1", { text: "Traces" }));

    const option = (value, label, selected) => h("option", { value, selected: selected ? true : null, text: label });
    const form = h("form", { class: "filters", id: "trace-filters" },
      h("label", {}, "Search", h("input", { id: "filter-search", name: "search", type: "search", value: p.get("search") || "", placeholder: "name, id, agent, model" })),
      h("label", {}, "Status", h("select", { id: "filter-status", name: "status" },
        option("", "any"), ["ok", "error", "blocked"].map((s) => option(s, s, p.get("status") === s)))),
      h("label", {}, "Agent", h("select", { id: "filter-agent", name: "agent_id" }, option("", "any"),
        agents.agents.filter((a) => a.agent_id).map((a) => option(a.agent_id, a.agent_name || a.agent_id, p.get("agent_id") === a.agent_id)))),
      h("label", {}, "Model", h("select", { id: "filter-model", name: "model" }, option("", "any"),
        models.models.map((m) => option(m.model, m.model, p.get("model") === m.model)))),
      h("label", {}, "From", h("input", { id: "filter-from", name: "from", type: "datetime-local", value: toLocalInput(p.get("from")) })),
      h("label", {}, "To", h("input", { id: "filter-to", name: "to", type: "datetime-local", value: toLocalInput(p.get("to")) })),
      h("label", {}, "Sort", h("select", { id: "filter-sort", name: "sort" },
        ["start_time", "duration", "cost", "tokens", "spans", "name", "status"].map((s) => option(s, s.replace("_", " "), (p.get("sort") || "start_time") === s)))),
      h("label", {}, "Order", h("select", { id: "filter-order", name: "order" },
        option("desc", "descending", (p.get("order") || "desc") === "desc"), option("asc", "ascending", p.get("order") === "asc"))),
      h("button", { type: "submit", id: "filter-apply", text: "Apply" }),
      h("button", { type: "button", class: "secondary", text: "Reset", on: { click: () => { location.hash = "#/traces"; } } }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const [name, value] of new FormData(form).entries()) {
        if (!value) continue;
        next.set(name, name === "from" || name === "to" ? new Date(value).toISOString() : value);
      }
      newerPages.length = 0;
      location.hash = `#/traces?${next}`;
    });
    root.appendChild(form);
    root.appendChild(h("div", { class: "muted", id: "trace-total", text: `${fmt.int(page.total)} traces` }));
    const filtered = ["search", "status", "agent_id", "model", "from", "to"].some((name) => p.get(name));
    root.appendChild(AW.traceTable(page.traces, filtered ? "No trace matches these filters." : null));
    const older = () => {
      const next = new URLSearchParams(p);
      next.delete("offset");
      next.set("cursor", page.next_cursor);
      next.set("shown", shown + page.traces.length);
      newerPages.push(location.hash);
      location.hash = `#/traces?${next}`;
    };
    const newer = () => {
      // Back to the page this one was reached from; without one (a reloaded or shared link), the first page.
      const next = new URLSearchParams(p);
      for (const name of ["cursor", "shown", "offset"]) next.delete(name);
      location.hash = newerPages.pop() || `#/traces?${next}`;
    };
    root.appendChild(h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", id: "page-newer", disabled: shown === 0 ? true : null, text: "← Newer", on: { click: newer } }),
      h("span", { class: "muted", id: "page-range", text: page.traces.length ? `${shown + 1}–${shown + page.traces.length} of ${fmt.int(page.total)}` : "" }),
      h("button", { type: "button", class: "secondary", id: "page-older", disabled: page.next_cursor && shown + page.traces.length < page.total ? null : true, text: "Older →", on: { click: older } })));
  };
  // The hashes of the pages "Older →" left, for "← Newer" (a cursor only goes one way).
  const newerPages = [];

  AW.views.breakers = async function (root) {
    const [status, history] = await Promise.all([api("/api/circuit-breaker/status"), api("/api/circuit-breaker/history?limit=100")]);
    root.appendChild(h("h1", { text: "Circuit breakers" }));
    root.appendChild(h("p", { class: "muted", text: `${status.breakers.length} breakers reported, ${status.open} not closed.` }));
    root.appendChild(status.breakers.length ? h("table", { id: "breaker-status" },
      h("thead", {}, h("tr", {}, ["Scope", "State", "Last event", "Reason", "Threshold", "Current", "Changed", "Transitions", "Alerts"].map((t) => h("th", { text: t })))),
      h("tbody", {}, status.breakers.map((b) => h("tr", {},
        h("td", { text: `${b.scope} / ${b.scope_id}` }), h("td", {}, badge(b.state)), h("td", { text: b.last_event || "–" }),
        h("td", { text: b.reason || b.last_alert_reason || "–" }), h("td", { text: fmt.figure(b.threshold) }), h("td", { text: fmt.figure(b.current) }),
        h("td", { text: fmt.iso(b.last_transition || b.last_alert) }), h("td", { class: "num", text: b.transitions }), h("td", { class: "num", text: b.alerts })))))
      : h("div", { class: "empty", text: "No breaker has reported yet." }));
    root.appendChild(h("h2", { text: "Transitions" }));
    root.appendChild(history.transitions.length ? h("table", { id: "breaker-history" },
      h("thead", {}, h("tr", {}, ["Time", "Scope", "Event", "From", "To", "Reason", "Threshold", "Current", "Trace"].map((t) => h("th", { text: t })))),
      h("tbody", {}, history.transitions.map((t) => h("tr", {},
        h("td", { text: fmt.iso(t.time) }), h("td", { text: `${t.scope} / ${t.scope_id}` }), h("td", { text: t.event }),
        h("td", {}, badge(t.from_state)), h("td", {}, badge(t.to_state)), h("td", { text: t.reason || "–" }),
        h("td", { text: fmt.figure(t.threshold) }), h("td", { text: fmt.figure(t.current) }),
        h("td", {}, t.trace_id ? h("a", { href: `#/trace/${encodeURIComponent(t.trace_id)}`, text: t.trace_id.slice(0, 8) }) : "–")))))
      : h("div", { class: "empty", text: "No transitions recorded." }));
  };

  AW.views.alerts = async function (root) {
    const [rules, history] = await Promise.all([api("/api/alerts"), api("/api/alerts/history?limit=100")]);
    const rerender = () => window.dispatchEvent(new HashChangeEvent("hashchange"));
    root.appendChild(h("h1", { text: "Alerts" }));
    root.appendChild(h("h2", { text: "Rules" }));
    root.appendChild(rules.rules.length ? h("table", { id: "alert-rules" },
      h("thead", {}, h("tr", {}, ["Name", "Condition", "Threshold", "Action", "Cooldown", "Last fired", "Enabled", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, rules.rules.map((r) => h("tr", { "data-rule-id": r.id },
        h("td", { text: r.name }), h("td", { text: r.condition }), h("td", { text: r.threshold }),
        h("td", { text: r.action_type === "webhook" ? `webhook ${r.webhook_url || ""}` : `email ${r.email || "(ALERT_EMAIL)"}` }),
        h("td", { text: `${r.cooldown_seconds} s` }), h("td", { text: fmt.iso(r.last_triggered_at) }),
        h("td", {}, h("button", { type: "button", class: "secondary toggle", text: r.enabled ? "on" : "off",
          on: { click: async () => { await api(`/api/alerts/${r.id}`, { method: "PATCH", json: { enabled: !r.enabled } }); rerender(); } } })),
        h("td", {}, h("button", { type: "button", class: "danger", text: "Delete",
          on: { click: async () => { if (confirm("Delete this rule?")) { await api(`/api/alerts/${r.id}`, { method: "DELETE" }); rerender(); } } } }))))))
      : h("div", { class: "empty", text: "No rules yet." }));

    const message = h("div");
    const form = h("form", { class: "stack panel", id: "new-rule" },
      h("label", {}, "Name", h("input", { name: "name", required: true, maxlength: 200 })),
      h("label", {}, "Condition", h("select", { name: "condition" },
        ["cost_per_hour", "error_rate", "calls_per_minute", "blocked_calls", "latency_p95", "cron_missed", "cron_failed"].map((c) => h("option", { value: c, text: c })))),
      h("label", {}, "Threshold", h("input", { name: "threshold", type: "number", step: "any", min: 0, required: true })),
      h("label", {}, "Action", h("select", { name: "action_type" }, h("option", { value: "webhook", text: "webhook" }), h("option", { value: "email", text: "email" }))),
      h("label", {}, "Webhook URL", h("input", { name: "webhook_url", type: "url", placeholder: "https://hooks.slack.com/..." })),
      h("label", {}, "Email", h("input", { name: "email", type: "email" })),
      h("label", {}, "Cooldown (s)", h("input", { name: "cooldown_seconds", type: "number", min: 0, value: 300 })),
      h("button", { type: "submit", text: "Add rule" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form).entries());
      const body = { name: data.name, condition: data.condition, threshold: Number(data.threshold), action_type: data.action_type,
        cooldown_seconds: Number(data.cooldown_seconds || 300) };
      if (data.webhook_url) body.webhook_url = data.webhook_url;
      if (data.email) body.email = data.email;
      try { await api("/api/alerts", { method: "POST", json: body }); rerender(); }
      catch (error) { AW.clear(message).appendChild(AW.errorBox(error)); }
    });
    root.appendChild(h("h2", { text: "New rule" }));
    root.appendChild(message);
    root.appendChild(form);

    root.appendChild(h("h2", { text: "History" }));
    root.appendChild(history.history.length ? h("table", { id: "alert-history" },
      h("thead", {}, h("tr", {}, ["Time", "Source", "Message", "Value", "Threshold", "Delivery"].map((t) => h("th", { text: t })))),
      h("tbody", {}, history.history.map((a) => h("tr", {},
        h("td", { text: fmt.iso(a.time) }), h("td", { text: a.source }), h("td", { text: a.message }),
        h("td", { text: fmt.figure(a.value) }), h("td", { text: fmt.figure(a.threshold) }),
        h("td", { text: a.delivery_status ? `${a.delivery_status}${a.delivery_error ? ": " + a.delivery_error : ""}` : "–" })))))
      : h("div", { class: "empty", text: "No alerts yet." }));
  };

  // Crons: did each scheduled job run when it should have? Statuses are computed by the collector. A job with no
  // schedule shows its runs only: nothing was expected of it, so there is no next run and nothing late or missed.
  const count = (n) => (n == null ? "–" : String(n));
  AW.views.crons = async function (root) {
    const data = await api("/api/crons");
    root.appendChild(h("h1", { text: "Crons" }));
    root.appendChild(h("p", { class: "muted", text: "Jobs wrapped in agentwatch.cron(name, schedule=...) or registered with PUT /api/crons/{name}; a job wrapped in agentwatch.cron(name) alone shows its runs, with no schedule. Schedules are in UTC; times are shown in local time." }));
    root.appendChild(data.crons.length ? h("table", { id: "cron-list" },
      h("thead", {}, h("tr", {}, ["Name", "Schedule", "Grace", "Last run", "Started", "Duration", "Next expected", "Recent runs (newest first)", "ok / failed / late / missed"].map((t) => h("th", { text: t })))),
      h("tbody", {}, data.crons.map((c) => h("tr", { "data-cron": c.name },
        h("td", { class: "cron-name", text: c.name }),
        h("td", { class: "cron-schedule" }, c.schedule != null ? h("code", { text: c.schedule }) : h("span", { class: "muted", text: "no schedule" })),
        h("td", { text: c.grace_seconds != null ? `${c.grace_seconds} s` : "–" }),
        h("td", { class: "cron-last" }, c.last_run ? badge(c.last_run.status) : "–"),
        h("td", { text: !c.last_run ? "–" : c.last_run.started_at ? fmt.iso(c.last_run.started_at) : `not started (expected ${fmt.iso(c.last_run.expected_at)})` }),
        h("td", { text: c.last_run && c.last_run.duration_ms != null ? fmt.ms(c.last_run.duration_ms) : "–" }),
        h("td", { class: "cron-next", text: c.scheduled === false ? "– (no schedule)" : fmt.iso(c.next_expected_at) }),
        h("td", { class: "cron-history" }, c.history.length ? c.history.map((run) => {
          const tag = badge(run.status);
          tag.title = [run.expected_at && `expected ${run.expected_at}`, run.started_at && `started ${run.started_at}`].filter(Boolean).join(", ");
          return run.trace_id ? h("a", { href: `#/trace/${encodeURIComponent(run.trace_id)}` }, tag) : tag;
        }) : "–"),
        h("td", { class: "num cron-counts", text: [c.counts.ok, c.counts.failed, c.counts.late, c.counts.missed].map(count).join(" / ") })))))
      : h("div", { class: "empty", text: "No cron known yet. Use agentwatch.cron(\"nightly\", schedule=\"0 3 * * *\") or PUT /api/crons/{name}." }));
  };

  AW.views.reports = async function (root, route) {
    const month = route.params.get("month") || new Date().toISOString().slice(0, 7);
    const report = await api(`/api/reports/monthly?month=${encodeURIComponent(month)}`);
    root.appendChild(h("h1", { text: `Monthly report ${report.month}` }));
    const picker = h("input", { type: "month", value: report.month, on: { change: (e) => { location.hash = `#/reports?month=${e.target.value}`; } } });
    root.appendChild(h("div", { class: "pager" }, picker,
      h("button", { type: "button", class: "secondary", text: "Download CSV", on: { click: () => download(`/api/reports/monthly/csv?month=${report.month}`, `agentwatch-traces-${report.month}.csv`) } }),
      h("button", { type: "button", text: "Download signed PDF", on: { click: () => download(`/api/reports/monthly/pdf?month=${report.month}`, `agentwatch-report-${report.month}.pdf`) } })));
    const t = report.totals;
    root.appendChild(h("div", { class: "kpis" }, kpi("r-traces", "Traces", fmt.int(t.traces)), kpi("r-cost", "Cost", fmt.cost(t.cost_usd)),
      kpi("r-calls", "LLM calls", fmt.int(t.llm_calls)), kpi("r-transitions", "Breaker transitions", fmt.int(report.circuit_breaker.transitions)),
      kpi("r-alerts", "Alerts", fmt.int(report.alerts.total))));
    root.appendChild(h("div", { class: "panel" }, h("h2", { text: "Cost per day" }),
      AW.columnChart(report.daily_cost.map((d) => ({ label: d.date.slice(8), value: d.cost_usd })), fmt.cost)));
  };

  // Downloads go through fetch so that the API key header is sent; the file is handed over as a blob.
  async function download(path, name) {
    const key = sessionStorage.getItem(AW.keyStorage);
    const response = await fetch(path, { headers: key ? { "X-API-Key": key } : {} });
    if (!response.ok) { alert(`Download failed: ${response.status}`); return; }
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: name });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
})(window.AW);
