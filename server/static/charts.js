/* Small SVG charts drawn by hand: no library, no network. Labels are set with textContent. */
"use strict";

(function (AW) {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, text) {
    const el = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
    if (text !== undefined) el.textContent = String(text);
    return el;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // points: [{label, value, title}], format(value) -> string
  AW.columnChart = function (points, format) {
    const width = 1000, height = 220, left = 56, bottom = 22, top = 8;
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
    const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
    const plotH = height - bottom - top, plotW = width - left - 6;
    for (let i = 0; i <= 4; i++) {
      const y = top + plotH - (plotH * i) / 4;
      root.appendChild(svg("line", { x1: left, x2: width - 4, y1: y, y2: y, stroke: "#e3e7ec" }));
      root.appendChild(svg("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, format((max * i) / 4)));
    }
    const slot = plotW / Math.max(points.length, 1);
    const labelEvery = Math.ceil(points.length / 12);
    points.forEach((p, i) => {
      const h = (plotH * p.value) / max;
      const bar = svg("rect", { class: "bar", x: left + i * slot + slot * 0.15, y: top + plotH - h, width: Math.max(slot * 0.7, 1), height: Math.max(h, 0) });
      bar.appendChild(svg("title", {}, `${p.label}: ${format(p.value)}`));
      root.appendChild(bar);
      if (i % labelEvery === 0) {
        root.appendChild(svg("text", { x: left + i * slot + slot / 2, y: height - 6, "text-anchor": "middle" }, p.label));
      }
    });
    return root;
  };

  // items: [{label, value}] -> horizontal bars, biggest first
  AW.barList = function (items, format) {
    const rows = items.slice(0, 10);
    const width = 480, rowH = 22, labelW = 170, valueW = 70;
    const height = Math.max(rows.length * rowH + 4, 30);
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
    const max = Math.max(0, ...rows.map((r) => r.value)) || 1;
    rows.forEach((r, i) => {
      const y = 2 + i * rowH;
      const label = r.label.length > 30 ? r.label.slice(0, 29) + "…" : r.label;
      root.appendChild(svg("text", { x: 0, y: y + 14 }, label));
      const w = ((width - labelW - valueW) * r.value) / max;
      const bar = svg("rect", { class: "bar", x: labelW, y: y + 3, width: Math.max(w, 1), height: rowH - 8 });
      bar.appendChild(svg("title", {}, `${r.label}: ${format(r.value)}`));
      root.appendChild(bar);
      root.appendChild(svg("text", { x: width - 2, y: y + 14, "text-anchor": "end" }, format(r.value)));
    });
    if (!rows.length) root.appendChild(svg("text", { x: 0, y: 18 }, "no data"));
    return root;
  };
})(window.AW);
