// Front page: each service's readiness, and whether this gateway routes the mail inbox.
"use strict";
(function () {
  var TIMEOUT_MS = 4000;

  function fetchWithTimeout(url) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    return fetch(url, { signal: controller.signal, cache: "no-store" })
      .finally(function () { clearTimeout(timer); });
  }

  function show(cell, text, kind) {
    cell.textContent = text;
    cell.className = "status " + kind;
  }

  function checkHealth() {
    document.querySelectorAll("[data-health]").forEach(function (cell) {
      fetchWithTimeout(cell.dataset.health)
        .then(function (resp) {
          if (resp.ok) { show(cell, "ready", "ok"); return; }
          if (resp.status !== 503) { show(cell, "no answer (HTTP " + resp.status + ")", "unknown"); return; }
          return resp.json().then(
            function (body) { show(cell, "not ready: " + (body.detail || "503"), "down"); },
            function () { show(cell, "not ready (503)", "down"); });
        })
        .catch(function () { show(cell, "unreachable", "down"); });
    });
  }

  function checkMail() {
    var link = document.getElementById("mail-link");
    var note = document.getElementById("mail-note");
    fetchWithTimeout("mail/api/v1/info")
      .then(function (resp) {
        if (!resp.ok) { throw new Error(String(resp.status)); }
        return resp.json();
      })
      .then(function (info) {
        note.textContent = info.Messages + " message(s) in the sink.";
      })
      .catch(function () {
        link.removeAttribute("href");
        note.textContent = "This gateway does not route the inbox (it does in development " +
          "only): `agora status` shows the mail sink's own address; under docker compose, " +
          "Mailpit's inbox is at http://127.0.0.1:8025/.";
      });
  }

  checkHealth();
  checkMail();
  setInterval(checkHealth, 10000);
})();

// The commands name the gateway this page came from (it may not listen on 8080).
(function () {
  document.querySelectorAll("#try pre").forEach(function (pre) {
    pre.textContent = pre.textContent.split("http://127.0.0.1:8080").join(location.origin);
  });
})();
