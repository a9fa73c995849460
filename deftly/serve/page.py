"""The web app's one page: pick, drop or paste an image (or paste an image URL), see it with the
model's ranked predictions. Plain HTML and JavaScript with fetch(); nothing is loaded from
anywhere else, so it works offline.

The script and the style are inline, allowed by their SHA-256 hashes in the page's
Content-Security-Policy (`page_headers`): no other script can run in the page, and every text the
server sends back (class names, error messages) is written with textContent, never parsed as HTML.

The page's state is in `<body data-state>`: idle, busy, done or error (what a browser test waits on).
"""
from __future__ import annotations

import base64
import hashlib
import html
import re

__all__ = ["page_headers", "render_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
main { max-width: 46rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
.sub { color: #5b6475; margin: 0 0 1rem; overflow-wrap: anywhere; }
#drop { display: block; border: 2px dashed #9aa3b5; border-radius: .6rem; padding: 1.5rem; text-align: center;
        background: #fff; cursor: pointer; }
#drop.over { border-color: #2a62d4; background: #eef3fd; }
#drop input { display: block; margin: .75rem auto 0; }
#url-form { display: flex; gap: .5rem; margin: .75rem 0; }
#url-form[hidden] { display: none; }
#url { flex: 1; padding: .45rem; font-size: 1rem; }
button { padding: .45rem 1rem; font-size: 1rem; }
#status { min-height: 1.4em; }
#status.error { color: #b3261e; font-weight: 600; }
#output { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
#preview { min-width: 8rem; max-width: 16rem; max-height: 16rem; border-radius: .4rem; background: #fff; image-rendering: auto; }
#result h2 { font-size: 1.2rem; margin: 0 0 .5rem; }
#probs { padding-left: 1.4rem; margin: 0; }
#probs li { margin: .2rem 0; }
#probs .name { display: inline-block; min-width: 8rem; overflow-wrap: anywhere; }
#probs meter { width: 8rem; vertical-align: middle; margin: 0 .5rem; }
#probs .pct { font-variant-numeric: tabular-nums; }
"""

_SCRIPT = """
(function () {
  "use strict";
  var SHOWN = 10;
  var body = document.body;
  var maxBytes = Number(body.dataset.maxBytes);
  var fileInput = document.getElementById("file");
  var drop = document.getElementById("drop");
  var urlForm = document.getElementById("url-form");
  var urlInput = document.getElementById("url");
  var preview = document.getElementById("preview");
  var statusLine = document.getElementById("status");
  var result = document.getElementById("result");
  var predictionText = document.getElementById("prediction");
  var probs = document.getElementById("probs");
  var more = document.getElementById("more");
  var objectUrl = null;
  var latest = 0;

  if (body.dataset.urls !== "1") { urlForm.hidden = true; }

  function setState(state, message) {
    body.dataset.state = state;
    statusLine.textContent = message || "";
    statusLine.className = state === "error" ? "error" : "";
  }

  function showPreview(source) {
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    if (source instanceof Blob) { objectUrl = URL.createObjectURL(source); source = objectUrl; }
    preview.src = source;
    preview.hidden = false;
  }

  function percent(p) {
    var x = p * 100;
    return (x >= 0.1 || x === 0 ? x.toFixed(1) : x.toPrecision(2)) + "%";
  }

  function render(answer) {
    var label = answer.prediction;
    predictionText.textContent = Array.isArray(label) ? (label.length ? label.join(", ") : "(no label)") : label;
    probs.textContent = "";
    answer.probabilities.slice(0, SHOWN).forEach(function (pair) {
      var item = document.createElement("li");
      var name = document.createElement("span");
      name.className = "name";
      name.textContent = pair[0];
      var meter = document.createElement("meter");
      meter.min = 0; meter.max = 1; meter.value = pair[1];
      var pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = percent(pair[1]);
      item.append(name, meter, pct);
      probs.append(item);
    });
    var rest = answer.probabilities.length - SHOWN;
    more.textContent = rest > 0 ? "and " + rest + " more classes" : "";
    result.hidden = false;
  }

  function send(form) {
    var ticket = ++latest;
    setState("busy", "Predicting\\u2026");
    result.hidden = true;
    fetch("predict", {method: "POST", body: form}).then(function (response) {
      return response.json().catch(function () {
        return {error: "the server answered HTTP " + response.status + " without JSON"};
      }).then(function (answer) {
        if (!response.ok || answer.error) { throw new Error(answer.error || "HTTP " + response.status); }
        return answer;
      });
    }).then(function (answer) {
      if (ticket !== latest) { return; }
      render(answer);
      setState("done", "");
    }, function (error) {
      if (ticket !== latest) { return; }
      setState("error", error.message);
    });
  }

  function useFile(file) {
    if (!file) { return; }
    if (file.size > maxBytes) {
      setState("error", file.name + " is " + (file.size / 1048576).toFixed(1) + " MB, over the limit of " +
               (maxBytes / 1048576).toFixed(1) + " MB");
      return;
    }
    showPreview(file);
    var form = new FormData();
    form.append("file", file, file.name || "pasted-image");
    send(form);
  }

  function useUrl(url) {
    url = (url || "").trim();
    if (!/^https?:\\/\\//i.test(url)) { setState("error", "paste an http:// or https:// address of an image"); return; }
    showPreview(url);
    var form = new FormData();
    form.append("url", url);
    send(form);
  }

  fileInput.addEventListener("change", function () { useFile(fileInput.files[0]); });
  urlForm.addEventListener("submit", function (event) { event.preventDefault(); useUrl(urlInput.value); });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function () { drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    var data = event.dataTransfer;
    if (data.files.length) { useFile(data.files[0]); }
    else if (body.dataset.urls === "1" && data.getData("text/uri-list")) {
      useUrl(data.getData("text/uri-list").split("\\n")[0]);
    }
  });
  document.addEventListener("paste", function (event) {
    var data = event.clipboardData;
    if (!data) { return; }
    if (data.files.length) { event.preventDefault(); useFile(data.files[0]); return; }
    var text = data.getData("text");
    if (event.target !== urlInput && body.dataset.urls === "1" && /^https?:\\/\\//i.test((text || "").trim())) {
      event.preventDefault();
      urlInput.value = text.trim();
      useUrl(text);
    }
  });
}());
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<link rel="icon" href="data:,">
<style>@STYLE@</style>
</head>
<body data-state="idle" data-max-bytes="@MAX_BYTES@" data-urls="@URLS@">
<main>
<h1>@TITLE@</h1>
<p class="sub">@CLASSES@</p>
<label id="drop" for="file"><strong>Choose an image</strong>, drop one here or paste one
<input type="file" id="file" name="file" accept="image/*"></label>
<form id="url-form"><input type="url" id="url" name="url" placeholder="or paste the address of an image"
 autocomplete="off"><button type="submit" id="url-go">Predict</button></form>
<p id="status" role="status" aria-live="polite"></p>
<div id="output">
<img id="preview" alt="the image being predicted" hidden>
<section id="result" hidden>
<h2>Prediction: <span id="prediction"></span></h2>
<ol id="probs"></ol>
<p id="more"></p>
</section>
</div>
</main>
<script>@SCRIPT@</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_CSP = "; ".join((
    "default-src 'none'",
    f"script-src {_sha256(_SCRIPT)}",
    f"style-src {_sha256(_STYLE)}",
    "img-src 'self' blob: data: http: https:",  # the preview: a picked file, or the pasted URL itself
    "connect-src 'self'",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
))


def page_headers() -> dict[str, str]:
    """The HTTP headers the page is served with: its Content-Security-Policy and friends."""
    return {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def render_page(model: str, classes: list[str], max_bytes: int, urls: bool, shown_classes: int = 20) -> str:
    """The page for the model file named `model` with `classes`; the page refuses files over
    `max_bytes` before sending them, and offers the URL field when `urls`."""
    names = ", ".join(classes[:shown_classes]) + (f", and {len(classes) - shown_classes} more"
                                                  if len(classes) > shown_classes else "")
    values = {"@TITLE@": html.escape(f"{model}: image classifier"),
              "@CLASSES@": html.escape(f"{len(classes)} class{'es' if len(classes) != 1 else ''}: {names}"),
              "@MAX_BYTES@": str(int(max_bytes)), "@URLS@": "1" if urls else "0",
              "@STYLE@": _STYLE, "@SCRIPT@": _SCRIPT}
    return re.sub(r"@[A-Z_]+@", lambda m: values[m.group()], _PAGE)  # one pass: values are not rescanned
