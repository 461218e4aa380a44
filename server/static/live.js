/* Live updates: reads the collector's /api/live event stream (with fetch, so the API key header goes along) and
   re-renders the open view when stored data changed. */
"use strict";

(function (AW) {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function handle(block) {
    let name = "message";
    for (const line of block.split("\n")) if (line.startsWith("event:")) name = line.slice(6).trim();
    if (name === "change" && AW.liveChanged) AW.liveChanged();
  }

  // Resolves when a key is entered in the key prompt (dom.js): one listener at a time, however often it is awaited.
  let keyEntered = null;
  function nextKey() {
    if (!keyEntered) {
      keyEntered = new Promise((resolve) => window.addEventListener(AW.KEY_EVENT, () => { keyEntered = null; resolve(); }, { once: true }));
    }
    return keyEntered;
  }

  async function follow() {
    for (;;) {
      try {
        const headers = {};
        const key = sessionStorage.getItem(AW.keyStorage);
        if (key) headers["X-API-Key"] = key;
        const response = await fetch("/api/live", { headers, cache: "no-store" });
        if (!response.ok || !response.body) {
          document.body.dataset.live = "off";
          if (response.status !== 401) await sleep(3000);
          // Refused for want of a key: again as soon as one is entered (or was, while this request was out).
          else if (sessionStorage.getItem(AW.keyStorage) === key) await Promise.race([sleep(10000), nextKey()]);
          continue;
        }
        document.body.dataset.live = "on";
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            handle(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
        }
      } catch (error) {
        document.body.dataset.live = "off";
        await sleep(3000);
      }
    }
  }

  follow();
})(window.AW);
