// The page's client: calls the same JSON API as any other client, shows answers and errors.
"use strict";

// Fetch JSON; an error answer (4xx/5xx, always {"message": ...}) or a network failure becomes
// an Error whose message is shown to the user as it is.
async function callApi(url, options) {
  let response;
  try {
    response = await fetch(url, withApiKey(options || {}));
  } catch (error) {
    throw new Error(`the server could not be reached (${error.message})`);
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    throw new Error(body.message || `the server answered ${response.status}`);
  }
  return body;
}

// The key typed in the page's API key field, if any, as the server expects it: a Bearer token.
function withApiKey(options) {
  const key = document.getElementById("api-key").value.trim();
  if (!key) {
    return options;
  }
  return { ...options, headers: { ...options.headers, Authorization: `Bearer ${key}` } };
}

// --- sqrt(a*pi) ------------------------------------------------------------------------------

function setUpPiSqrt() {
  const form = document.getElementById("pisqrt-form");
  const input = document.getElementById("a");
  const result = document.getElementById("result");
  const error = document.getElementById("pisqrt-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.value = "";
    error.textContent = "";
    try {
      const body = await callApi(`/pisqrt?a=${encodeURIComponent(input.value)}`);
      result.value = String(body.result);
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
}

// --- the digit -------------------------------------------------------------------------------

const STROKE_WIDTH = 18;  // about the width of a pen stroke on the 280 px canvas

function setUpDigit() {
  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d");
  const error = document.getElementById("digit-error");
  clearCanvas(context, canvas);

  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (canvas.width / box.width),
            (event.clientY - box.top) * (canvas.height / box.height)];
  };
  // Pointer events cover mouse, pen and touch alike.
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
    context.lineTo(...point(event));  // a tap leaves a dot
    context.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
  });
  const finish = () => { drawing = false; };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  document.getElementById("clear").addEventListener("click", () => {
    clearCanvas(context, canvas);
    showPrediction(null);
    error.textContent = "";
  });
  document.getElementById("predict").addEventListener("click", () => {
    canvas.toBlob((blob) => recognise(blob, "image/png"), "image/png");
  });
  document.getElementById("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) recognise(file, file.type || "application/octet-stream");
  });
}

function clearCanvas(context, canvas) {
  // Dark ink on white, as a person draws on paper; the server accepts either polarity.
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#000";
  context.lineWidth = STROKE_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
}

async function recognise(image, type) {
  const error = document.getElementById("digit-error");
  error.textContent = "";
  showPrediction(null);
  try {
    const body = await callApi("/predict", {
      method: "POST",
      headers: { "Content-Type": type },
      body: image,
    });
    showPrediction(body.result);
  } catch (failure) {
    error.textContent = failure.message;
  }
}

// The label, and one bar per digit whose length is its probability.
function showPrediction(prediction) {
  const label = document.getElementById("label");
  const bars = document.getElementById("bars");
  label.value = prediction ? String(prediction.label) : "";
  bars.replaceChildren();
  if (!prediction) return;
  prediction.probabilities.forEach((probability, digit) => {
    const item = document.createElement("li");
    item.className = digit === prediction.label ? "best" : "";
    const name = document.createElement("span");
    name.className = "digit-name";
    name.textContent = String(digit);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(probability * 70).toFixed(1)}%`;  // 100 % fills 70 % of the row
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(probability * 100).toFixed(1)} %`;
    item.append(name, bar, value);
    bars.append(item);
  });
}

setUpPiSqrt();
setUpDigit();
