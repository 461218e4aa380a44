/* DOM and API helpers. Everything from the server is untrusted text: it only ever becomes a text node
   (textContent / createTextNode), never markup, so a prompt holding <script> is shown, not run. */
"use strict";

window.AW = window.AW || {};

(function (AW) {
  // h("tr", {class: "x", on: {click: fn}}, child, "text", [more]) -> element
  AW.h = function (tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === "on") {
          for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
        } else if (name === "text") {
          el.textContent = String(value);
        } else if (name === "value") {
          el.value = value;
        } else {
          el.setAttribute(name, value === true ? "" : String(value));
        }
      }
    }
    AW.append(el, children);
    return el;
  };

  AW.append = function (el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  };

  AW.clear = function (el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  };

  AW.keyStorage = "agentwatch.apiKey";
  // Dispatched on window when a key was entered in the prompt (live.js reconnects at once).
  AW.KEY_EVENT = "agentwatch-key";

  AW.KEY_NEEDED = "This collector needs an API key: use \u201cEnter API key\u201d at the top.";

  // The key prompt is shared: a view sends several requests at once and each may be refused, yet the user is asked
  // once. `answers` counts the prompts answered; a request refused after one was answered since it was sent uses
  // that answer instead of asking again. After a cancel nothing asks until the user clicks the key button.
  let pending = null;
  let answers = 0;
  let declined = false;

  function send(path, opts) {
    const headers = Object.assign({}, opts.headers);
    const key = sessionStorage.getItem(AW.keyStorage);
    if (key) headers["X-API-Key"] = key;
    return fetch(path, Object.assign({}, opts, { headers }));
  }

  AW.api = async function (path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    const sentKey = sessionStorage.getItem(AW.keyStorage);
    const asked = answers;
    let response = await send(path, opts);
    if (response.status === 401) {
      if (declined) throw new Error(AW.KEY_NEEDED);
      if (asked === answers) await AW.askForKey("This collector needs an API key.", { rerender: false });
      const key = sessionStorage.getItem(AW.keyStorage);
      // A 401 means the request was not carried out: sending it again with the new key is safe.
      if (!key || key === sentKey) throw new Error(AW.KEY_NEEDED);
      response = await send(path, opts);
      if (response.status === 401) throw new Error(AW.KEY_NEEDED);
    }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("application/json") ? await response.json() : await response.text();
    if (!response.ok) {
      const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText;
      throw new Error(`${response.status}: ${detail}`);
    }
    return data;
  };

  function showKeyNeeded(needed) {
    const button = document.getElementById("key-button");
    if (!button) return;
    button.textContent = needed ? "Enter API key" : "API key";
    button.classList.toggle("attention", needed);
  }

  // Resolves once the user answered. The prompt opens one task later, so that requests refused together join it;
  // while it is open (or being answered) every caller waits for the same answer. `rerender`: redraw the view after
  // (the key button), instead of the waiting requests being sent again (a refused request).
  AW.askForKey = function (message, options) {
    const rerender = !options || options.rerender !== false;
    if (rerender) declined = false;  // the user asked: ask even after a cancel
    if (!pending) {
      pending = new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
        const key = window.prompt(`${message || ""}\nAPI key (kept in this tab only):`, "");
        answers += 1;
        pending = null;
        declined = key === null;
        showKeyNeeded(declined);
        if (key !== null) {
          if (key) sessionStorage.setItem(AW.keyStorage, key);
          else sessionStorage.removeItem(AW.keyStorage);
          window.dispatchEvent(new Event(AW.KEY_EVENT));
        }
        return key;
      });
    }
    return pending.then((key) => {
      if (rerender && key !== null) window.dispatchEvent(new HashChangeEvent("hashchange"));
      return key;
    });
  };

  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const figure = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4, useGrouping: false });
  const smallFigure = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 4, useGrouping: false });
  AW.fmt = {
    int: (v) => number.format(v || 0),
    cost: (v) => {
      const n = Number(v || 0);
      if (n > 0 && n < 0.0001) return "$" + n.toPrecision(2);  // a cheap call is not $0.0000
      if (n >= 1) return "$" + n.toFixed(2);
      // Four decimals, unless they lose the first two significant digits: a trace of two $0.000075 calls is
      // $0.00015, which four decimals showed as $0.0001 (a third less than its own calls).
      const fixed = n.toFixed(4);
      return "$" + (Number(fixed) === Number(n.toPrecision(2)) ? fixed : n.toPrecision(2));
    },
    ms: (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : Number(v).toFixed(v < 10 ? 1 : 0) + " ms"),
    pct: (v) => (Number(v || 0) * 100).toFixed(1) + " %",
    // A limit's figures as the SDK sent them (a spend, a rate, seconds of a pause): four decimals at most, not
    // 50.451342261000185, but four significant digits below 1 (a budget of $0.00015 is not "0.0002", a spend of
    // $0.00004 not "0"); anything not a number (an older SDK's text) as it came.
    figure: (v) => (v === null || v === undefined ? "–" : typeof v !== "number" ? String(v)
      : (v !== 0 && Math.abs(v) < 1 ? smallFigure : figure).format(v)),
    time: (ns) => (ns ? new Date(Number(ns) / 1e6).toLocaleString() : "–"),
    iso: (value) => (value ? new Date(value).toLocaleString() : "–"),
  };

  AW.badge = function (value, extra) {
    const text = value === null || value === undefined ? "–" : String(value);
    const safeClass = text.toLowerCase().replace(/[^a-z_]/g, "");
    return AW.h("span", { class: `badge ${safeClass} ${extra || ""}`, text });
  };

  AW.errorBox = function (error) {
    return AW.h("div", { class: "error-box", role: "alert", text: String(error && error.message ? error.message : error) });
  };

  // "#/traces?status=error" -> {view: "traces", arg: undefined, params: URLSearchParams}
  AW.route = function () {
    const hash = location.hash.replace(/^#\/?/, "") || "overview";
    const [path, query] = hash.split("?");
    const parts = path.split("/");
    return { view: parts[0], arg: parts[1] ? decodeURIComponent(parts[1]) : undefined, params: new URLSearchParams(query || "") };
  };
})(window.AW);
