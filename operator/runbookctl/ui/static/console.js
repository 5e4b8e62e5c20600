// runbook console: live updates by server-sent events (one stream per page, fed by the
// server's single shared Kubernetes watch). No inline script anywhere (CSP script-src 'self');
// everything inserted comes from our own server, which escaped it.
"use strict";
(function () {
  if (document.body.dataset.live !== "on" || !window.EventSource) return;
  var state = document.getElementById("live-state");
  var source = new EventSource("/events");
  var execution = document.getElementById("execution");
  var table = document.getElementById("executions");
  var pending = null;
  var opened = 0;

  source.onopen = function () {
    if (state) { state.hidden = false; state.textContent = "live"; }
    // What changed between rendering this page and subscribing is not in the stream: catch up
    // once per (re)connection (list, then watch).
    if (execution) refreshExecution();
    else if (table && opened > 0) window.location.reload();
    opened += 1;
  };
  source.onerror = function () { if (state) { state.textContent = "reconnecting…"; } };

  var lastRefresh = 0;

  function refreshExecution() {
    // Re-render the page body on the server (escaped there); coalesce bursts of events, and
    // re-read at most about once a second however busy the execution is.
    if (pending) return;
    var wait = Math.max(150, 1000 - (Date.now() - lastRefresh));
    pending = setTimeout(function () {
      pending = null;
      lastRefresh = Date.now();
      var url = "/executions/" + encodeURIComponent(execution.dataset.ns) + "/" +
        encodeURIComponent(execution.dataset.name) + "/main";
      if (execution.dataset.query) url += "?" + execution.dataset.query;
      fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (r.ok) return r.text();
        return null;
      }).then(function (html) {
        if (html === null) return;
        var answer = document.getElementById("answer");
        execution.innerHTML = html;
        // how many times the page re-read itself (tests wait for the first, after subscribing)
        document.body.dataset.synced = String((Number(document.body.dataset.synced) || 0) + 1);
        if (answer && !document.getElementById("answer")) {
          var head = execution.querySelector("section.head");
          if (head) head.appendChild(answer);
        }
      });
    }, wait);
  }

  function updateRow(msg) {
    var row = table.querySelector('tr[data-key="' + CSS.escape(msg.namespace + "/" + msg.name) + '"]');
    if (!row) return;
    var phase = row.querySelector('[data-field="phase"]');
    if (phase) { phase.textContent = msg.phase; phase.className = "phase phase-" + msg.phase; }
    var progress = row.querySelector('[data-field="progress"]');
    if (progress) progress.textContent = msg.progress;
    var paused = row.querySelector('[data-field="paused"]');
    if (paused) paused.textContent = msg.paused;
  }

  source.onmessage = function (event) {
    var msg;
    try { msg = JSON.parse(event.data); } catch (e) { return; }
    if (execution && msg.uid === execution.dataset.uid) refreshExecution();
    if (table) updateRow(msg);
  };
})();
