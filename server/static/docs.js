// Starts Swagger UI on /docs. A file of its own because the CSP forbids inline scripts; the Swagger UI bundle
// itself is served from /docs-assets (packaged with the collector's dependencies, no CDN).
(function () {
  "use strict";
  const key = sessionStorage.getItem("agentwatch.apiKey");
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The dashboard's key (kept in this tab's sessionStorage), so that "Try it out" works on a keyed collector.
    requestInterceptor: (request) => {
      if (key) request.headers["X-API-Key"] = key;
      return request;
    },
  });
})();
