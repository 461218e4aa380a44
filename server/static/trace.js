/* Trace detail: summary, Art. 12 score, span waterfall, span details (prompts as inert text), graph. */
"use strict";

(function (AW) {
  const { h, api, fmt, badge } = AW;

  // Chat messages read best as "[role]" and their text; anything else as indented JSON.
  function pretty(value) {
    if (typeof value === "string") return value;
    const isChat = Array.isArray(value) && value.length > 0 &&
      value.every((m) => m && typeof m === "object" && typeof m.role === "string" && typeof m.content === "string");
    if (isChat) return value.map((m) => `[${m.role}]\n${m.content}`).join("\n\n");
    return JSON.stringify(value, null, 2);
  }

  // Depth-first order of the span tree; spans whose parent is missing are treated as roots. Spans in a parent
  // cycle (a -> b -> a) have no root above them: each such group is listed from its earliest span, marked, so
  // that every span is shown. Iterative: a chain 100,000 spans deep would overflow the call stack.
  function treeOrder(spans) {
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const children = new Map();
    const roots = [];
    for (const span of spans) {
      if (span.parent_span_id && byId.has(span.parent_span_id) && span.parent_span_id !== span.span_id) {
        if (!children.has(span.parent_span_id)) children.set(span.parent_span_id, []);
        children.get(span.parent_span_id).push(span);
      } else {
        roots.push(span);
      }
    }
    const ordered = [];
    const seen = new Set();
    const visit = (top, cycle) => {
      const stack = [[top, 0]];
      while (stack.length) {
        const [span, depth] = stack.pop();
        if (seen.has(span.span_id)) continue;
        seen.add(span.span_id);
        ordered.push({ span, depth, cycle: cycle && span === top });
        const kids = children.get(span.span_id) || [];
        for (let i = kids.length - 1; i >= 0; i -= 1) stack.push([kids[i], depth + 1]);
      }
    };
    for (const root of roots) visit(root, false);
    for (const span of spans) if (!seen.has(span.span_id)) visit(span, true);
    return ordered;
  }

  function spanDetail(span) {
    const rows = [
      ["Span", span.span_id], ["Kind", span.kind], ["Status", span.status], ["Start", fmt.time(span.start_time_unix_nano)],
      ["Duration", fmt.ms(span.duration_ms)], ["Agent", [span.agent_name, span.agent_id, span.agent_role].filter(Boolean).join(" · ") || "–"],
      ["Model", [span.model, span.provider].filter(Boolean).join(" · ") || "–"],
      ["Tokens", `${fmt.int(span.input_tokens)} in (${fmt.int(span.cached_input_tokens)} cached) / ${fmt.int(span.output_tokens)} out`],
      ["Cost", fmt.cost(span.cost_usd)],
    ];
    return h("div", { class: "panel", id: "span-detail" },
      h("h2", { text: span.name }),
      h("dl", { class: "detail-grid" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
      h("h2", { text: "Input" }), "input" in span ? h("pre", { id: "span-input", text: pretty(span.input) }) : h("div", { class: "muted", text: "not captured" }),
      h("h2", { text: "Output" }), "output" in span ? h("pre", { id: "span-output", text: pretty(span.output) }) : h("div", { class: "muted", text: "not captured" }),
      h("h2", { text: "Attributes" }), h("pre", { id: "span-attributes", text: pretty(span.attributes) }));
  }

  // The graph's edges as lines of text: every LLM call is a node of its own, so an agent's four calls to one model
  // are four edges that read the same; they are one line, counted.
  function graphLines(graph) {
    const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
    const lines = new Map();
    for (const e of graph.edges) {
      const source = (nodes.get(e.source) || {}).label || e.source;
      const target = (nodes.get(e.target) || {}).label || e.target;
      const key = JSON.stringify([source, e.type, target]);
      const line = lines.get(key);
      if (line) line.count += e.count;
      else lines.set(key, { source, type: e.type, target, count: e.count });
    }
    return [...lines.values()];
  }

  const MAX_SPANS = 100000;  // the most /api/traces/{id}/spans lists in one answer

  AW.views.trace = async function (root, route) {
    const id = encodeURIComponent(route.arg || "");
    const [trace, spansAnswer, score, graph] = await Promise.all([
      api(`/api/traces/${id}`), api(`/api/traces/${id}/spans`), api(`/api/traces/${id}/compliance-score`), api(`/api/traces/${id}/graph`)]);
    const spans = spansAnswer.spans;
    root.appendChild(h("p", {}, h("a", { href: "#/traces", text: "← Traces" })));
    root.appendChild(h("h1", { id: "trace-title", text: trace.name || trace.trace_id }));
    const session = (spans.find((s) => s.attributes && typeof s.attributes["session.id"] === "string") || {}).attributes;
    if (session) root.appendChild(h("p", { id: "trace-session" }, "Session ", h("a", { href: `#/session/${encodeURIComponent(session["session.id"])}`, text: session["session.id"] })));
    root.appendChild(h("div", { class: "kpis" },
      ...[["Status", badge(trace.status)], ["Start", fmt.time(trace.start_time_unix_nano)], ["Duration", fmt.ms(trace.duration_ms)],
        ["Spans", fmt.int(trace.span_count)], ["Tokens", fmt.int(trace.total_tokens)], ["Cost", fmt.cost(trace.cost_usd)],
        ["Art. 12 score", `${score.score} / 100`]]
        .map(([label, value]) => h("div", { class: "kpi" }, h("div", { class: "label", text: label }), h("div", { class: "value" }, value)))));

    const spansTable = h("div", { id: "spans" });
    const detail = h("div");
    const renderSpans = (shown) => {
      AW.clear(spansTable);
      let start = Infinity;
      let end = -Infinity;
      for (const s of shown) {  // not Math.min(...spans): 100,000 arguments overflow the stack
        start = Math.min(start, s.start_time_unix_nano);
        end = Math.max(end, s.end_time_unix_nano);
      }
      const total = Math.max(end - start, 1);
      let selected = null;
      const ordered = treeOrder(shown);
      const cycles = ordered.filter((item) => item.cycle).length;
      const rows = ordered.map(({ span, depth, cycle }) => {
        const left = ((span.start_time_unix_nano - start) / total) * 100;
        const width = ((span.end_time_unix_nano - span.start_time_unix_nano) / total) * 100;
        const row = h("tr", { class: `clickable span-row${cycle ? " cycle" : ""}`, "data-span-id": span.span_id },
          h("td", { class: "span-name" }, h("span", { style: null }, "\u00a0\u00a0".repeat(Math.min(depth, 40))),
            h("span", { class: "badge kind", text: span.kind }), " ", h("span", { class: "span-label", text: span.name }),
            cycle ? h("span", { class: "muted", text: " (in a parent cycle)" }) : ""),
          h("td", {}, badge(span.status)),
          h("td", { class: "num", text: fmt.ms(span.duration_ms) }),
          h("td", { class: "num", text: span.input_tokens || span.output_tokens ? `${fmt.int(span.input_tokens)} / ${fmt.int(span.output_tokens)}` : "" }),
          h("td", { class: "num", text: span.cost_usd ? fmt.cost(span.cost_usd) : "" }),
          h("td", { class: "bar-cell" }, h("div", { class: "wf-track" },
            h("div", { class: `wf-bar ${span.kind.replace(/[^a-z_]/g, "")} ${span.status === "ok" ? "" : span.status}`, "data-left": left.toFixed(2), "data-width": width.toFixed(2) }))));
        row.addEventListener("click", () => {
          if (selected) selected.classList.remove("selected");
          selected = row;
          row.classList.add("selected");
          AW.clear(detail).appendChild(spanDetail(span));
        });
        return row;
      });
      const notes = [];
      if (shown.length < trace.span_count) {
        const more = Math.min(trace.span_count, MAX_SPANS);
        notes.push(h("p", { class: "notice", id: "spans-truncated" },
          `Showing the first ${fmt.int(shown.length)} of ${fmt.int(trace.span_count)} spans (earliest first). `,
          shown.length < more ? h("button", { id: "spans-all", text: `Show ${fmt.int(more)}` }) : "",
          trace.span_count > MAX_SPANS ? ` The API lists at most ${fmt.int(MAX_SPANS)} spans per request; all of them are in the database (GET /api/traces/${trace.trace_id}/spans?limit=${MAX_SPANS}).` : ""));
      }
      if (cycles) {
        notes.push(h("p", { class: "notice", id: "spans-cycles",
          text: `${fmt.int(cycles)} group(s) of spans name each other as parents (a parent cycle); they are listed from their earliest span, marked "in a parent cycle".` }));
      }
      spansTable.append(...notes, h("table", { class: "waterfall", id: "waterfall" },
        h("thead", {}, h("tr", {}, ["Span", "Status", "Latency", "Tokens in / out", "Cost", "Timeline"].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows)));
      // Positions are set through the CSSOM: the CSP forbids inline style attributes.
      for (const bar of spansTable.querySelectorAll(".wf-bar")) {
        bar.style.left = `${bar.dataset.left}%`;
        bar.style.width = `${Math.max(Number(bar.dataset.width), 0.2)}%`;
      }
      const all = spansTable.querySelector("#spans-all");
      if (all) {
        all.addEventListener("click", async () => {
          all.disabled = true;
          all.textContent = "Loading…";
          const answer = await api(`/api/traces/${id}/spans?limit=${MAX_SPANS}`);
          renderSpans(answer.spans);
        });
      }
      if (rows.length) rows[0].click();
      spansTable.dataset.rows = String(rows.length);
    };
    root.appendChild(h("h2", { text: "Spans" }));
    root.appendChild(spansTable);
    renderSpans(spans);
    root.appendChild(detail);

    const lines = graphLines(graph);
    root.appendChild(h("div", { class: "grid" },
      h("div", { class: "panel", id: "graph" }, h("h2", { text: "Causal graph" }),
        lines.length ? h("ul", { class: "graph-list" }, lines.map((line) => h("li", {},
          h("strong", { text: line.source }), ` ${line.type} `, h("strong", { text: line.target }),
          line.count > 1 ? ` ×${line.count}` : "")))
          : h("div", { class: "muted", text: "no edges" })),
      h("div", { class: "panel", id: "compliance" }, h("h2", { text: `EU AI Act Art. 12 readiness: ${score.score} / 100` }),
        h("table", { class: "rubric" }, h("tbody", {}, score.items.map((item) => h("tr", {},
          h("td", { text: `${item.points}/${item.max_points}` }),
          h("td", {}, h("div", { text: `${item.description} (${item.article})` }), h("div", { class: "muted", text: item.evidence })))))))));
  };
})(window.AW);
