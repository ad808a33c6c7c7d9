// The inbox: Mailpit's API of this sink, read with relative URLs (so /mail/ works too).
"use strict";
(function () {
  var REFRESH_MS = 2000;
  var TIMEOUT_MS = 5000;
  var lastListKey = "";
  var selected = "";

  function api(path, options) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    var init = Object.assign({ cache: "no-store", signal: controller.signal }, options || {});
    return fetch(path, init).then(function (resp) {
      clearTimeout(timer);
      if (!resp.ok) { throw new Error(path + ": HTTP " + resp.status); }
      return resp;
    });
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  function address(a) {
    if (!a || !a.Address) { return ""; }
    return a.Name ? a.Name + " <" + a.Address + ">" : a.Address;
  }

  function when(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  // The list shows the time alone for today's messages, the date for older ones.
  function short(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso; }
    var today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleDateString();
  }

  function renderList(data) {
    var messages = data.messages || [];
    var key = messages.map(function (m) { return m.ID + (m.Read ? "r" : "u"); }).join(",");
    document.getElementById("count").textContent = data.total + " message(s)";
    document.getElementById("empty").hidden = messages.length > 0;
    if (key === lastListKey) { return; }
    lastListKey = key;
    var body = document.getElementById("messages");
    body.replaceChildren();
    messages.forEach(function (m) {
      var row = el("tr");
      row.dataset.id = m.ID;
      if (!m.Read) { row.classList.add("unread"); }
      if (m.ID === selected) { row.classList.add("selected"); }
      var time = el("td", short(m.Created), "time");
      time.title = when(m.Created);
      row.appendChild(time);
      [["from", address(m.From)], ["to", (m.To || []).map(address).join(", ")],
        ["subject", m.Subject || "(no subject)"]].forEach(function (cell) {
        var td = el("td", cell[1], cell[0]);
        td.title = cell[1];
        row.appendChild(td);
      });
      row.addEventListener("click", function () { location.hash = m.ID; });
      body.appendChild(row);
    });
  }

  function refresh() {
    // Newest first, as the API lists them.
    return api("api/v1/messages?limit=200")
      .then(function (resp) { return resp.json(); })
      .then(renderList)
      .then(function () { document.getElementById("live").textContent = "refreshing every 2 s"; })
      .catch(function () { document.getElementById("live").textContent = "sink unreachable"; });
  }

  // Turn the URLs of the text part into links, with DOM nodes only (never innerHTML).
  function linkify(pre, text) {
    pre.replaceChildren();
    var pattern = /https?:\/\/[^\s<>"']+/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text)) !== null) {
      pre.appendChild(document.createTextNode(text.slice(last, match.index)));
      var link = el("a", match[0]);
      link.href = match[0];
      link.rel = "noreferrer";
      pre.appendChild(link);
      last = match.index + match[0].length;
    }
    pre.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderHeaders(headers) {
    var body = document.getElementById("m-headers");
    body.replaceChildren();
    var names = Object.keys(headers);
    function isKey(n) { return n.toLowerCase() === "message-id" || /^x-agora-/i.test(n); }
    // Message-ID and X-Agora-* first: they tie the e-mail to its event and delivery.
    names.sort(function (a, b) { return Number(isKey(b)) - Number(isKey(a)); });
    names.forEach(function (name) {
      headers[name].forEach(function (value) {
        var row = el("tr");
        if (isKey(name)) { row.className = "key"; }
        row.appendChild(el("td", name));
        row.appendChild(el("td", value));
        body.appendChild(row);
      });
    });
  }

  function show(id) {
    selected = id;
    document.querySelectorAll("#messages tr").forEach(function (row) {
      row.classList.toggle("selected", row.dataset.id === id);
    });
    var pane = document.getElementById("message");
    if (!id) { pane.hidden = true; return; }
    var path = "api/v1/message/" + encodeURIComponent(id);
    Promise.all([
      api(path).then(function (r) { return r.json(); }),
      api(path + "/headers").then(function (r) { return r.json(); }),
    ]).then(function (parts) {
      var m = parts[0];
      document.getElementById("m-subject").textContent = m.Subject || "(no subject)";
      document.getElementById("m-from").textContent = address(m.From);
      document.getElementById("m-to").textContent = (m.To || []).map(address).join(", ");
      document.getElementById("m-date").textContent = when(m.Date);
      var frame = document.getElementById("m-html");
      document.getElementById("m-html-part").hidden = !m.HTML;
      frame.src = m.HTML ? "view/" + encodeURIComponent(m.ID) + ".html" : "about:blank";
      linkify(document.getElementById("m-text"), m.Text || "");
      renderHeaders(parts[1]);
      document.getElementById("m-raw").href = path + "/raw";
      pane.hidden = false;
      refresh();
    }).catch(function () {
      pane.hidden = true;
      location.hash = "";
    });
  }

  var deleteButton = document.getElementById("delete-all");
  var disarm = null;
  deleteButton.addEventListener("click", function () {
    // Two clicks: the first arms the button for three seconds, the second deletes.
    if (!deleteButton.classList.contains("armed")) {
      deleteButton.classList.add("armed");
      deleteButton.textContent = "Click again to delete all";
      disarm = setTimeout(function () {
        deleteButton.classList.remove("armed");
        deleteButton.textContent = "Delete all";
      }, 3000);
      return;
    }
    clearTimeout(disarm);
    deleteButton.classList.remove("armed");
    deleteButton.textContent = "Delete all";
    api("api/v1/messages", { method: "DELETE" }).then(function () {
      location.hash = "";
      show("");
      refresh();
    });
  });

  window.addEventListener("hashchange", function () { show(location.hash.slice(1)); });
  refresh().then(function () { show(location.hash.slice(1)); });
  setInterval(refresh, REFRESH_MS);
})();
