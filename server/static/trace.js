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

  // Depth-first order of the span tree; spans whose parent is missing are treated as roots.
  function treeOrder(spans) {
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const children = new Map();
    const roots = [];
    for (const span of spans) {
      if (span.parent_span_id && byId.has(span.parent_span_id)) {
        if (!children.has(span.parent_span_id)) children.set(span.parent_span_id, []);
        children.get(span.parent_span_id).push(span);
      } else {
        roots.push(span);
      }
    }
    const ordered = [];
    const seen = new Set();
    const visit = (span, depth) => {
      if (seen.has(span.span_id)) return;
      seen.add(span.span_id);
      ordered.push({ span, depth });
      for (const child of children.get(span.span_id) || []) visit(child, depth + 1);
    };
    for (const root of roots) visit(root, 0);
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

  AW.views.trace = async function (root, route) {
    const id = encodeURIComponent(route.arg || "");
    const [trace, spansAnswer, score, graph] = await Promise.all([
      api(`/api/traces/${id}`), api(`/api/traces/${id}/spans`), api(`/api/traces/${id}/compliance-score`), api(`/api/traces/${id}/graph`)]);
    const spans = spansAnswer.spans;
    root.appendChild(h("p", {}, h("a", { href: "#/traces", text: "← Traces" })));
    root.appendChild(h("h1", { id: "trace-title", text: trace.name || trace.trace_id }));
    root.appendChild(h("div", { class: "kpis" },
      ...[["Status", badge(trace.status)], ["Start", fmt.time(trace.start_time_unix_nano)], ["Duration", fmt.ms(trace.duration_ms)],
        ["Spans", fmt.int(trace.span_count)], ["Tokens", fmt.int(trace.total_tokens)], ["Cost", fmt.cost(trace.cost_usd)],
        ["Art. 12 score", `${score.score} / 100`]]
        .map(([label, value]) => h("div", { class: "kpi" }, h("div", { class: "label", text: label }), h("div", { class: "value" }, value)))));

    const start = Math.min(...spans.map((s) => s.start_time_unix_nano));
    const end = Math.max(...spans.map((s) => s.end_time_unix_nano));
    const total = Math.max(end - start, 1);
    const detail = h("div");
    let selected = null;
    const rows = treeOrder(spans).map(({ span, depth }) => {
      const left = ((span.start_time_unix_nano - start) / total) * 100;
      const width = ((span.end_time_unix_nano - span.start_time_unix_nano) / total) * 100;
      const row = h("tr", { class: "clickable span-row", "data-span-id": span.span_id },
        h("td", { class: "span-name" }, h("span", { style: null }, "\u00a0\u00a0".repeat(depth)), h("span", { class: "badge kind", text: span.kind }), " ", h("span", { text: span.name })),
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
    root.appendChild(h("h2", { text: "Spans" }));
    root.appendChild(h("table", { class: "waterfall", id: "waterfall" },
      h("thead", {}, h("tr", {}, ["Span", "Status", "Latency", "Tokens in / out", "Cost", "Timeline"].map((t) => h("th", { text: t })))),
      h("tbody", {}, rows)));
    // Positions are set through the CSSOM: the CSP forbids inline style attributes.
    for (const bar of root.querySelectorAll(".wf-bar")) {
      bar.style.left = `${bar.dataset.left}%`;
      bar.style.width = `${Math.max(Number(bar.dataset.width), 0.2)}%`;
    }
    root.appendChild(detail);
    if (rows.length) rows[0].click();

    const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
    root.appendChild(h("div", { class: "grid" },
      h("div", { class: "panel", id: "graph" }, h("h2", { text: "Causal graph" }),
        graph.edges.length ? h("ul", { class: "graph-list" }, graph.edges.map((e) => h("li", {},
          h("strong", { text: (nodes.get(e.source) || {}).label || e.source }), ` ${e.type} `,
          h("strong", { text: (nodes.get(e.target) || {}).label || e.target }), e.count > 1 ? ` ×${e.count}` : "")))
          : h("div", { class: "muted", text: "no edges" })),
      h("div", { class: "panel", id: "compliance" }, h("h2", { text: `EU AI Act Art. 12 readiness: ${score.score} / 100` }),
        h("table", { class: "rubric" }, h("tbody", {}, score.items.map((item) => h("tr", {},
          h("td", { text: `${item.points}/${item.max_points}` }),
          h("td", {}, h("div", { text: `${item.description} (${item.article})` }), h("div", { class: "muted", text: item.evidence })))))))));
  };
})(window.AW);
