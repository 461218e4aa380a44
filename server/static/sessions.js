/* Sessions: traces grouped by session (agentwatch.session(), a LangGraph thread_id, OTLP session.id), and one
   session's story: its traces in order, where they were blocked, the breaker transitions and the resume. */
"use strict";

(function (AW) {
  const { h, api, fmt, badge } = AW;
  const link = (id) => `#/session/${encodeURIComponent(id)}`;

  AW.views.sessions = async function (root, route) {
    const p = route.params;
    const limit = 50;
    const offset = Number(p.get("offset") || 0);
    const query = new URLSearchParams({ limit, offset });
    if (p.get("search")) query.set("search", p.get("search"));
    const page = await api(`/api/sessions?${query}`);
    root.appendChild(h("h1", { text: "Sessions" }));
    root.appendChild(h("p", { class: "muted", text: "Traces that belong together: agentwatch.session(...), every run and resume of a LangGraph thread (thread_id), or an OTLP session.id / gen_ai.conversation.id." }));
    const form = h("form", { class: "filters", id: "session-filters" },
      h("label", {}, "Search", h("input", { id: "session-search", name: "search", type: "search", value: p.get("search") || "", placeholder: "session id" })),
      h("button", { type: "submit", text: "Apply" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = new FormData(form).get("search");
      location.hash = value ? `#/sessions?search=${encodeURIComponent(value)}` : "#/sessions";
    });
    root.appendChild(form);
    root.appendChild(h("div", { class: "muted", id: "session-total", text: `${fmt.int(page.total)} sessions` }));
    if (!page.sessions.length) {
      root.appendChild(h("div", { class: "empty", text: "No sessions yet. Wrap runs in agentwatch.session(\"name\"), or run a LangGraph graph with a thread_id." }));
      return;
    }
    root.appendChild(h("table", { id: "session-list" },
      h("thead", {}, h("tr", {}, ["Session", "Status", "Runs", "LLM calls", "Blocked calls", "Cost", "First activity", "Last activity"].map((t) =>
        h("th", { class: ["Runs", "LLM calls", "Blocked calls", "Cost"].includes(t) ? "num" : null, text: t })))),
      h("tbody", {}, page.sessions.map((s) => h("tr", { class: "clickable", "data-session-id": s.session_id, on: { click: () => { location.hash = link(s.session_id); } } },
        h("td", {}, h("a", { href: link(s.session_id), class: "session-id", text: s.session_id })),
        h("td", {}, badge(s.status)),
        h("td", { class: "num", text: fmt.int(s.trace_count) }),
        h("td", { class: "num", text: fmt.int(s.llm_calls) }),
        h("td", { class: "num", text: fmt.int(s.blocked_calls) }),
        h("td", { class: "num", text: fmt.cost(s.cost_usd) }),
        h("td", { text: fmt.iso(s.first_activity) }),
        h("td", { text: fmt.iso(s.last_activity) }))))));
    const move = (delta) => { const next = new URLSearchParams(p); next.set("offset", Math.max(0, offset + delta)); location.hash = `#/sessions?${next}`; };
    root.appendChild(h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: offset === 0 ? true : null, text: "← Newer", on: { click: () => move(-limit) } }),
      h("span", { class: "muted", text: `${offset + 1}–${Math.min(offset + limit, page.total)} of ${fmt.int(page.total)}` }),
      h("button", { type: "button", class: "secondary", disabled: offset + limit >= page.total ? true : null, text: "Older →", on: { click: () => move(limit) } })));
  };

  // "session": the trace holding a session's own span (a session opened outside any trace), not a run.
  const ROLE_TEXT = { run: "run", blocked: "blocked", resume: "resumed", resume_blocked: "resumed, blocked again", session: "session record" };

  function storyItem(item) {
    const when = h("span", { class: "muted story-time", text: fmt.iso(item.time) });
    if (item.type === "trace") {
      return h("li", { class: `story-trace ${item.role}`, "data-role": item.role },
        when, " ", badge(ROLE_TEXT[item.role] || item.role), " trace ",
        h("a", { href: `#/trace/${encodeURIComponent(item.trace_id)}`, text: item.name || item.trace_id }),
        ` · ${fmt.cost(item.cost_usd)}`, item.resumes ? ` · resumes ${item.resumes.slice(0, 8)}` : "");
    }
    if (item.type === "block") {
      return h("li", { class: "story-block", "data-role": "block" },
        when, " ", badge("blocked"), ` at ${item.kind} “${item.name}”: ${item.reason || "limit"}`,
        item.scope ? ` (${item.scope} / ${item.scope_id})` : "");
    }
    const numbers = item.current !== null && item.current !== undefined ? ` · ${fmt.figure(item.current)} of ${fmt.figure(item.threshold)}` : "";
    return h("li", { class: `story-breaker ${item.role}`, "data-role": item.role },
      when, " ", badge(item.to_state), " breaker ", h("a", { href: "#/breakers", text: `${item.scope} / ${item.scope_id}` }),
      `: ${item.event} (${item.from_state || "–"} → ${item.to_state || "–"}, ${item.reason || "–"})${numbers}`);
  }

  AW.views.session = async function (root, route) {
    const id = route.arg || "";
    // By query, not path: a session named "." or ".." in a path would be resolved away by the browser.
    const s = await api(`/api/session?id=${encodeURIComponent(id)}`);
    root.appendChild(h("p", {}, h("a", { href: "#/sessions", text: "← Sessions" })));
    root.appendChild(h("h1", {}, "Session ", h("span", { id: "session-title", text: s.session_id })));
    root.appendChild(h("div", { class: "kpis", id: "session-kpis" }, [
      ["Runs", fmt.int(s.trace_count)], ["LLM calls", fmt.int(s.llm_calls)], ["Blocked calls", fmt.int(s.blocked_calls)],
      ["Cost", fmt.cost(s.cost_usd)], ["First activity", fmt.iso(s.first_activity)], ["Last activity", fmt.iso(s.last_activity)]
    ].map(([label, value]) => h("div", { class: "kpi" }, h("div", { class: "label", text: label }), h("div", { class: "value", text: value })))));
    root.appendChild(h("h2", { text: s.resumed ? "Story: blocked, recovered, resumed" : "Story" }));
    root.appendChild(h("ol", { class: "story panel", id: "session-story" }, s.story.map(storyItem)));
    root.appendChild(h("h2", { text: "Traces in order" }));
    root.appendChild(h("table", { id: "session-traces" },
      h("thead", {}, h("tr", {}, ["Trace", "Part", "Status", "Start", "Duration", "LLM calls", "Cost"].map((t) =>
        h("th", { class: ["Duration", "LLM calls", "Cost"].includes(t) ? "num" : null, text: t })))),
      h("tbody", {}, s.traces.map((t) => h("tr", { class: "clickable", "data-trace-id": t.trace_id, "data-role": t.role, on: { click: () => { location.hash = `#/trace/${encodeURIComponent(t.trace_id)}`; } } },
        h("td", {}, h("a", { href: `#/trace/${encodeURIComponent(t.trace_id)}`, text: t.name || t.trace_id })),
        h("td", {}, badge(ROLE_TEXT[t.role] || t.role, "kind")),
        h("td", {}, badge(t.status)),
        h("td", { text: fmt.time(t.start_time_unix_nano) }),
        h("td", { class: "num", text: fmt.ms(t.duration_ms) }),
        h("td", { class: "num", text: fmt.int(t.llm_calls) }),
        h("td", { class: "num", text: fmt.cost(t.cost_usd) }))))));
  };
})(window.AW);
