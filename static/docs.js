// The API's documentation: Swagger UI reading the document the server generates from its
// functions' type hints. A file of its own (no inline script), so the page's strict
// Content-Security-Policy holds here too.
"use strict";

const STREAM_TYPES = ["application/x-ndjson", "text/event-stream"];

// Whether the document says this call answers a stream (a generator's items, as they come).
function answersStream(request) {
  const path = new URL(request.url, window.location.href).pathname;
  const method = (request.method ?? "GET").toLowerCase(); // the document's own fetch has none
  const content = window.ui.specSelectors
    .specJson()
    .getIn(["paths", path, method, "responses", "200", "content"]);
  return content !== undefined && STREAM_TYPES.some((type) => content.has(type));
}

// The panel where a stream's lines appear as they arrive, each with its time since the call.
function streamPanel(request) {
  let panel = document.getElementById("stream");
  if (!panel) {
    panel = document.createElement("section");
    panel.id = "stream";
    document.body.append(panel);
  }
  const title = document.createElement("h2");
  const url = new URL(request.url, window.location.href);
  title.textContent = `${request.method} ${url.pathname}${url.search}`;
  const lines = document.createElement("pre");
  const state = document.createElement("p");
  state.className = "state";
  state.textContent = "streaming…";
  panel.replaceChildren(title, lines, state);
  return { lines, state };
}

async function showStream(body, request) {
  const { lines, state } = streamPanel(request);
  const started = performance.now();
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const parts = (pending + value).split("\n");
      pending = parts.pop();
      for (const line of parts.filter((part) => part !== "")) {
        const seconds = ((performance.now() - started) / 1000).toFixed(2);
        lines.append(`+${seconds} s  ${line}\n`);
      }
    }
    state.textContent = "the stream ended";
  } catch (error) {
    state.textContent = `the stream broke off: ${error}`;
  }
}

// Swagger UI shows an answer once all of it has come; a stream's lines are shown here as they
// arrive, and Swagger UI gets the whole of it as before.
async function fetchShowingStreams(url, request) {
  const response = await fetch(url, request);
  if (!response.ok || !response.body || !answersStream(request)) return response;
  const [shown, kept] = response.body.tee();
  showStream(shown, request);
  const { status, statusText, headers } = response;
  return new Response(kept, { status, statusText, headers });
}

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    // No call to the public validator service: the page talks to this server only.
    validatorUrl: null,
    requestInterceptor: (request) => Object.assign(request, { userFetch: fetchShowingStreams }),
  });
});
