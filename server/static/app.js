/* Router: one view at a time, chosen by the URL hash; live views refresh themselves. */
"use strict";

(function (AW) {
  const view = document.getElementById("view");
  const LIVE = new Set(["overview", "breakers", "crons"]);
  // Re-rendered when /api/live reports a change (live.js); the timer above stays as a fallback.
  const ON_CHANGE = new Set(["overview", "traces", "breakers", "crons", "sessions", "session"]);
  let generation = 0;
  let timer = null;

  async function render() {
    const route = AW.route();
    const current = ++generation;
    // Until this render lands the old view stays on screen: it must not read as ready, or whoever waits for
    // data-ready (a script, a test) types into a form that is about to be replaced.
    delete view.dataset.ready;
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.view === route.view || (route.view === "trace" && link.dataset.view === "traces") || (route.view === "session" && link.dataset.view === "sessions"));
    }
    const renderer = AW.views[route.view] || AW.views.overview;
    const next = AW.h("div", { id: `view-${route.view}` });
    try {
      await renderer(next, route);
    } catch (error) {
      AW.append(next, [AW.errorBox(error)]);
    }
    // A slower, older render must not replace a newer one.
    if (current !== generation) return;
    AW.clear(view).appendChild(next);
    view.dataset.ready = route.view;
    clearTimeout(timer);
    if (LIVE.has(route.view)) timer = setTimeout(render, 15000);
  }

  async function health() {
    try {
      const response = await fetch("/health");
      const data = await response.json();
      document.getElementById("conn").textContent = `v${data.version} · ${data.local_mode ? "local mode" : "API key mode"}`;
    } catch (error) {
      document.getElementById("conn").textContent = "collector unreachable";
    }
  }

  AW.liveChanged = function () {
    const route = AW.route();
    const editing = document.activeElement && view.contains(document.activeElement) && /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (ON_CHANGE.has(route.view) && !editing) render();
  };

  document.getElementById("key-button").addEventListener("click", () => AW.askForKey(""));
  window.addEventListener("hashchange", render);
  health();
  render();
})(window.AW);
