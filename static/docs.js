// The API's documentation: Swagger UI reading the document the server generates from its
// functions' type hints. A file of its own (no inline script), so the page's strict
// Content-Security-Policy holds here too.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    // No call to the public validator service: the page talks to this server only.
    validatorUrl: null,
  });
});
