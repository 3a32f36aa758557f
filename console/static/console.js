// SpillWatch console: live updates without reload (progressive enhancement; the pages work without it).
// One EventSource on /api/events; on a relevant event the page re-fetches its server-rendered fragment.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-live");
  if (!page || !window.EventSource) { return; }
  var dot = document.getElementById("live-status");
  var box = document.querySelector("[data-fragment]");
  var pending = null;

  function refresh() {
    if (!box || pending) { return; }
    pending = setTimeout(function () {
      pending = null;
      fetch(box.getAttribute("data-fragment"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401 || r.redirected) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) { return; }
          box.innerHTML = html;
          document.body.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { /* the next event retries */ });
    }, 250);
  }

  function relevant(type, ev) {
    if (page === "cameras") { return type === "camera" || type === "cameras" || type === "incident"; }
    if (page === "incidents") { return type === "incident"; }
    if (page === "incident") { return type === "incident" && ev.incident_id === box.getAttribute("data-incident"); }
    return false;
  }

  var es = new EventSource("/api/events");
  es.addEventListener("hello", function () { if (dot) { dot.classList.add("live"); } document.body.setAttribute("data-live-ready", "1"); });
  es.onerror = function () { if (dot) { dot.classList.remove("live"); } };
  ["incident", "camera", "cameras"].forEach(function (type) {
    es.addEventListener(type, function (msg) {
      var ev = {};
      try { ev = JSON.parse(msg.data); } catch (e) { return; }
      if (relevant(type, ev)) { refresh(); }
    });
  });
})();
