/* Breakers view, operator control: per scope pause / resume / add budget / kill (confirmed) / limits editor, the
   processes following the collector, and the audit trail. Appended below the breaker tables of views.js. */
"use strict";

(function (AW) {
  const { h, api, badge, fmt } = AW;
  const LIMIT_FIELDS = [
    ["budget_per_hour", "Budget $/h", "number", "any"],
    ["max_error_rate", "Max error rate", "number", "any"],
    ["max_calls_per_minute", "Max calls/min", "number", "1"],
  ];
  // What the operator was doing, kept across the view's live refreshes (every 15 s).
  const draft = { open: null, values: {}, message: null };

  const REASON = "control-reason-text";
  const keyOf = (s) => `${s.scope}/${s.scope_id}`;
  const rerender = () => window.dispatchEvent(new HashChangeEvent("hashchange"));

  function scopesFrom(status) {
    const scopes = new Map([["global/*", { scope: "global", scope_id: "*", label: "global / * (every process)" }]]);
    const add = (scope, id) => { if (scope === "global" || scope === "agent") { const s = { scope, scope_id: id }; if (!scopes.has(keyOf(s))) scopes.set(keyOf(s), s); } };
    for (const b of status.breakers) add(b.scope, b.scope_id);
    for (const p of status.processes || []) for (const m of p.monitors || []) add(m.scope, m.scope_id);
    for (const o of status.overrides || []) add(o.scope, o.scope_id);
    return [...scopes.values()];
  }

  function stateOf(s, status) {
    const states = new Set();
    for (const p of status.processes || []) for (const m of p.monitors || []) {
      if (m.scope === s.scope && (s.scope_id === "*" || m.scope_id === s.scope_id)) states.add(m.state);
    }
    if (!states.size) for (const b of status.breakers) if (b.scope === s.scope && b.scope_id === s.scope_id && b.state) states.add(String(b.state).toUpperCase());
    return [...states].flatMap((state, index) => (index ? [" ", badge(state)] : [badge(state)]));
  }

  // What a process says of one of its monitors: state, what stopped it, the hour's spend against its budget.
  function monitorReport(m) {
    const spend = m.spend_last_hour === null || m.spend_last_hour === undefined ? ""
      : ` · ${fmt.cost(m.spend_last_hour)}${m.budget_per_hour === null || m.budget_per_hour === undefined ? "" : ` of ${fmt.cost(m.budget_per_hour)}`} in the last hour`;
    return h("li", { class: "monitor", "data-scope": `${m.scope}/${m.scope_id}` },
      `${m.scope}/${m.scope_id} `, badge(m.state), m.reason ? ` ${m.reason}` : "", spend);
  }

  function inForce(s, status) {
    return (status.overrides || []).filter((o) => o.scope === s.scope && o.scope_id === s.scope_id).map((o) => {
      if (o.mode === "limits") return `limits ${Object.entries(o.limits).map(([k, v]) => `${k}=${v}`).join(", ")} (${o.actor})`;
      if (o.mode === "pause") return `paused ${Math.round(o.remaining_seconds)} s more (${o.actor})`;
      return `${o.mode === "kill" ? "killed" : o.mode} by ${o.actor}`;
    }).join("; ") || "–";
  }

  async function act(path, body, what, method) {
    const reason = document.getElementById("control-reason").value.trim();
    if (reason) body.reason = reason;
    try {
      const answer = await api(path, { method: method || "POST", json: body });
      draft.open = null;
      draft.values = {};
      draft.message = `${what}: recorded as action #${answer.action.id}; processes apply it within about 2 s.`;
    } catch (error) {
      draft.message = `${what} failed: ${error.message}`;
    }
    rerender();
  }

  const target = (s) => (s.scope_id === "*" ? { scope: s.scope } : { scope: s.scope, scope_id: s.scope_id });

  // An input whose value survives the view's refreshes while the operator is still typing.
  function field(name, attrs) {
    const input = h("input", Object.assign({}, attrs, { name }));
    const kept = draft.values[name];
    if (kept !== undefined) {
      if (input.type === "checkbox") input.checked = kept;
      else input.value = kept;
    }
    const remember = () => { draft.values[name] = input.type === "checkbox" ? input.checked : input.value; };
    input.addEventListener("input", remember);
    input.addEventListener("change", remember);
    return input;
  }

  // Opening an editor starts it afresh; the reason typed for the next action is kept.
  function open(kind, s) {
    draft.open = `${kind}:${keyOf(s)}`;
    draft.values = { [REASON]: draft.values[REASON] };
    draft.message = null;
    rerender();
  }
  const isOpen = (kind, s) => draft.open === `${kind}:${keyOf(s)}`;

  function actions(s) {
    const seconds = field(`pause-${keyOf(s)}`, { type: "number", min: "1", step: "1", value: "60", class: "pause-seconds", "aria-label": "pause seconds", size: "5" });
    const usd = field(`budget-${keyOf(s)}`, { type: "number", min: "0.01", step: "any", value: "5", class: "add-usd", "aria-label": "USD to add", size: "5" });
    return h("td", { class: "control-actions" },
      seconds, h("button", { type: "button", class: "secondary pause", text: "Pause", on: { click: () => act("/api/circuit-breaker/pause", Object.assign(target(s), { seconds: Number(seconds.value) }), `Pause ${keyOf(s)}`) } }), " ",
      h("button", { type: "button", class: "secondary resume", text: "Resume", on: { click: () => act("/api/circuit-breaker/resume", target(s), `Resume ${keyOf(s)}`) } }), " ",
      usd, h("button", { type: "button", class: "secondary add-budget", text: "Add budget", on: { click: () => act("/api/circuit-breaker/override", Object.assign(target(s), { additional_budget: Number(usd.value) }), `Add $${usd.value} to ${keyOf(s)}`) } }), " ",
      h("button", { type: "button", class: "secondary edit-limits", text: "Limits…", on: { click: () => open("limits", s) } }), " ",
      h("button", { type: "button", class: "danger kill", text: "Kill…", on: { click: () => open("kill", s) } }));
  }

  function killConfirm(s) {
    return h("tr", { class: "kill-confirm" }, h("td", { colspan: "4" },
      h("strong", { text: `Kill ${s.scope_id === "*" ? `every ${s.scope} scope in every process` : keyOf(s)}? ` }),
      "Every LLM call in scope is blocked (reason operator_kill) until someone resumes it. ",
      h("button", { type: "button", class: "danger confirm-kill", text: "Confirm kill", on: { click: () => act("/api/circuit-breaker/kill", target(s), `Kill ${keyOf(s)}`) } }), " ",
      h("button", { type: "button", class: "secondary cancel", text: "Cancel", on: { click: () => { draft.open = null; rerender(); } } })));
  }

  function limitsEditor(s, status) {
    const current = (status.overrides || []).find((o) => o.mode === "limits" && o.scope === s.scope && o.scope_id === s.scope_id);
    const now = current ? current.limits : {};
    const inputs = LIMIT_FIELDS.map(([name, label, type, step]) => h("label", {}, label,
      field(name, { type, step, min: "0", value: now[name] ?? "", class: `limit-${name}` })));
    const flags = ["block_on_threshold", "hard_budget"].map((name) => h("label", {}, name,
      field(name, { type: "checkbox", class: `limit-${name}`, checked: now[name] ? true : null })));
    const save = () => {
      const body = {};
      for (const [name] of LIMIT_FIELDS) {
        const raw = draft.values[name] ?? (now[name] ?? "");
        if (raw !== "" && raw !== null) body[name] = Number(raw);
      }
      for (const name of ["block_on_threshold", "hard_budget"]) {
        const value = draft.values[name] ?? now[name];
        if (value !== undefined) body[name] = Boolean(value);
      }
      act(`/api/limits/${encodeURIComponent(s.scope)}/${encodeURIComponent(s.scope_id)}`, body, `Limits for ${keyOf(s)}`, "PUT");
    };
    return h("tr", { class: "limits-editor" }, h("td", { colspan: "4" },
      h("form", { class: "filters", on: { submit: (e) => { e.preventDefault(); save(); } } }, inputs, flags,
        h("button", { type: "submit", class: "save-limits", text: "Save limits" }),
        current ? h("button", { type: "button", class: "secondary clear-limits", text: "Back to process limits", on: { click: () => act(`/api/limits/${encodeURIComponent(s.scope)}/${encodeURIComponent(s.scope_id)}`, {}, `Clear limits of ${keyOf(s)}`, "DELETE") } }) : null,
        h("button", { type: "button", class: "secondary cancel", text: "Cancel", on: { click: () => { draft.open = null; rerender(); } } }))));
  }

  function controlPanel(status) {
    const rows = [];
    for (const s of scopesFrom(status)) {
      rows.push(h("tr", { class: "control-row", "data-scope": keyOf(s) },
        h("td", { class: "scope", text: s.label || `${s.scope} / ${s.scope_id}` }), h("td", { class: "states" }, stateOf(s, status)),
        h("td", { class: "in-force", text: inForce(s, status) }), actions(s)));
      if (isOpen("kill", s)) rows.push(killConfirm(s));
      if (isOpen("limits", s)) rows.push(limitsEditor(s, status));
    }
    return h("div", { class: "panel", id: "operator-control" },
      h("h2", { text: "Operator control" }),
      h("p", { class: "muted", text: "Reaches every SDK process that exports here (they poll about every second). Needs the API key or an operator token." }),
      h("label", { class: "muted" }, "Reason (recorded in the audit trail) ", field(REASON, { id: "control-reason", size: "40", maxlength: "1000" })),
      draft.message ? h("p", { id: "control-message", role: "status", text: draft.message }) : null,
      h("table", { id: "control-scopes" },
        h("thead", {}, h("tr", {}, ["Scope", "State in processes", "Operator overrides", "Actions"].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows)));
  }

  function processes(status) {
    const list = status.processes || [];
    return list.length ? h("table", { id: "control-processes" },
      h("thead", {}, h("tr", {}, ["Process", "Service", "Credential", "Applied version", "Breakers", "Last poll"].map((t) => h("th", { text: t })))),
      h("tbody", {}, list.map((p) => h("tr", {},
        h("td", { text: p.process }), h("td", { text: p.service || "–" }), h("td", { text: p.credential || "–" }),
        h("td", { class: "num", text: `${p.applied_version} / ${status.control_version}` }),
        h("td", {}, h("ul", { class: "monitors" }, (p.monitors || []).map(monitorReport).concat(p.monitors_omitted
          ? [h("li", { class: "monitor more", text: `${p.monitors_omitted} more, not reported` })] : []))),
        h("td", { text: `${p.last_seen_seconds_ago.toFixed(1)} s ago` })))))
      : h("div", { class: "empty", text: "No SDK process is polling this collector." });
  }

  function auditTrail(history) {
    const list = history.operator_actions || [];
    return list.length ? h("table", { id: "operator-audit" },
      h("thead", {}, h("tr", {}, ["Time", "Who", "Role", "Action", "Scope", "Why", "Details"].map((t) => h("th", { text: t })))),
      h("tbody", {}, list.map((a) => h("tr", {},
        h("td", { text: fmt.iso(a.time) }), h("td", { class: "actor", text: a.actor }), h("td", { text: a.role }),
        h("td", { class: "action", text: a.action }), h("td", { text: `${a.scope} / ${a.scope_id}` }),
        h("td", { class: "why", text: a.reason || "–" }), h("td", { text: Object.keys(a.params || {}).length ? JSON.stringify(a.params) : "–" })))))
      : h("div", { class: "empty", text: "No operator action recorded." });
  }

  const breakerTables = AW.views.breakers;
  AW.views.breakers = async function (root, route) {
    const [, status, history] = await Promise.all([breakerTables(root, route), api("/api/circuit-breaker/status"),
      api("/api/circuit-breaker/history?limit=100")]);
    AW.append(root, [controlPanel(status), h("h2", { text: "Processes following the collector" }), processes(status),
      h("h2", { text: "Operator audit trail" }), auditTrail(history)]);
  };
})(window.AW);
