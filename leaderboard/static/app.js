// The pages' small behaviours: drag-and-drop upload, live status, live leaderboard.
// No inline scripts (CSP: script-src 'self'); every text goes in with textContent.
"use strict";

(function () {
  function $(sel, root) { return (root || document).querySelector(sel); }

  // ---- upload: drop a zip on the zone, or choose it with the file input
  var zone = $("[data-dropzone]");
  if (zone) {
    var input = $("input[type=file]", zone);
    var chosen = $("[data-chosen]", zone);
    var show = function () {
      chosen.textContent = input.files && input.files.length ? "Chosen: " + input.files[0].name : "";
    };
    input.addEventListener("change", show);
    // The zone's text opens the chooser on a click (the keyboard reaches the input itself).
    Array.prototype.forEach.call(zone.querySelectorAll("[data-dropzone-target]"), function (el) {
      el.addEventListener("click", function () { input.click(); });
    });
    ["dragenter", "dragover"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) {
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        show();
      }
    });
  }

  // ---- upload: send the form with XMLHttpRequest to show its progress (without script it
  // is an ordinary form post); a zip over the limit is refused before a byte is sent
  var form = $("[data-upload-form]");
  if (form && window.FormData && window.XMLHttpRequest) {
    var fileInput = $("input[type=file]", form);
    var errorBox = $("[data-upload-error]");
    var bar = $("[data-progress]", form);
    var meter = $("progress", bar);
    var said = $("[data-progress-text]", bar);
    var button = $("button[type=submit]", form);
    var mib = function (n) { return (n / 1048576).toFixed(1) + " MiB"; };
    var fail = function (message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      bar.hidden = true;
      button.disabled = false;
    };
    form.addEventListener("submit", function (e) {
      var file = fileInput.files && fileInput.files[0];
      if (!file) { return; }
      e.preventDefault();
      errorBox.hidden = true;
      if (file.size > Number(form.getAttribute("data-max-bytes"))) {
        fail(form.getAttribute("data-too-large"));
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") || window.location.pathname);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (ev) {
        if (!ev.lengthComputable) { return; }
        meter.max = ev.total;
        meter.value = ev.loaded;
        said.textContent = "Uploading " + file.name + ": " + mib(ev.loaded) + " of " +
          mib(ev.total) + " (" + Math.floor(100 * ev.loaded / ev.total) + "%)";
      });
      xhr.upload.addEventListener("load", function () {
        meter.removeAttribute("value");  // indeterminate while the server stores the zip
        said.textContent = "Sent; the server is storing " + file.name + "\u2026";
      });
      xhr.addEventListener("load", function () {
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (err) { data = null; }
        if (xhr.status < 300 && data && data.location) {
          window.location.assign(data.location);
          return;
        }
        fail((data && data.error) || "The upload failed (HTTP " + xhr.status + "); try again.");
      });
      xhr.addEventListener("error", function () {
        fail("The upload was interrupted; check your connection and try again.");
      });
      button.disabled = true;
      bar.hidden = false;
      meter.value = 0;
      said.textContent = "Starting the upload of " + file.name + "\u2026";
      xhr.send(new FormData(form));
    });
  }

  function poll(url, every, onData) {
    var timer = null;
    var stop = function () { if (timer) { clearTimeout(timer); timer = null; } };
    var tick = function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && onData(data) === false) { stop(); return; }
          timer = setTimeout(tick, every);
        })
        .catch(function () { timer = setTimeout(tick, every * 2); });
    };
    timer = setTimeout(tick, every);
  }

  function pct(v) { return v === null || v === undefined ? "" : (v * 100).toFixed(1) + "%"; }

  // ---- my submissions: update status cells until nothing is pending
  var list = $("[data-poll-submissions]");
  if (list && list.querySelector("tr[data-pending=yes]")) {
    poll(list.getAttribute("data-poll-submissions"), 2000, function (data) {
      var pending = false;
      data.submissions.forEach(function (s) {
        var row = list.querySelector('tr[data-id="' + s.id + '"]');
        if (!row) { return; }
        var st = row.querySelector("[data-field=status]");
        st.textContent = s.status_label;
        st.className = "status status-" + s.state;
        var reason = row.querySelector("[data-field=reason]");
        reason.textContent = s.reason;
        reason.title = s.reason ? s.message : "";
        reason.hidden = !s.reason;
        // The server words the cells (present.score_text): "—" until there is a result.
        row.querySelector("[data-field=score]").textContent = s.score_text;
        row.querySelector("[data-field=ranked]").textContent = s.ranked_text;
        row.querySelector("[data-field=counts]").textContent = s.counts_attempt ? "yes" : "no";
        row.setAttribute("data-pending", s.pending ? "yes" : "no");
        pending = pending || s.pending;
      });
      return pending;
    });
  }

  // ---- one submission: reload when grading is done
  var one = $("[data-poll-submission]");
  if (one) {
    poll(one.getAttribute("data-poll-submission"), 2000, function (s) {
      var st = one.querySelector("[data-field=status]");
      st.textContent = s.status.replace(/_/g, " ");
      st.className = "status status-" + s.state;
      if (!s.pending) { window.location.reload(); return false; }
      return true;
    });
  }

  // ---- leaderboard: fetch the JSON twin, rebuild the table when the version changes
  var board = $("[data-live-board]");
  if (board) {
    var version = board.getAttribute("data-version");
    var every = parseFloat(board.getAttribute("data-poll-s") || "10") * 1000;
    var status = $("[data-board-status]", board);
    var cell = function (tr, text, cls) {
      var td = document.createElement("td");
      td.textContent = text;
      if (cls) { td.className = cls; }
      tr.appendChild(td);
      return td;
    };
    var render = function (data) {
      var tbody = $("[data-board-table] tbody", board);
      var fresh = document.createElement("tbody");
      var width = data.columns.length + 4;
      var line = false;
      data.rows.forEach(function (r) {
        if (!line && !r.passed) {
          line = true;
          var lt = document.createElement("tr");
          lt.className = "pass-line";
          var ltd = cell(lt, "pass line: " + Math.round(data.pass_line * 100) + "% " +
                         data.columns[data.columns.length - 1]);
          ltd.colSpan = width;
          fresh.appendChild(lt);
        }
        var tr = document.createElement("tr");
        tr.className = (r.bonus ? "bonus " : "") + (r.passed ? "" : "below");
        var rank = cell(tr, String(r.rank), "rank");
        if (r.bonus) {
          var b = document.createElement("span");
          b.className = "badge";
          b.textContent = "+" + r.bonus;
          rank.appendChild(document.createTextNode(" "));
          rank.appendChild(b);
        } else if (r.bonus_withheld) {
          var w = document.createElement("span");
          w.className = "no-bonus muted small";
          w.title = "bonus places go to students who pass every part";
          w.textContent = "no bonus: not every part passed";
          rank.appendChild(document.createTextNode(" "));
          rank.appendChild(w);
        }
        var name = cell(tr, "", "name");
        var cut = document.createElement("span");
        cut.className = "cut";
        cut.title = r.display_name;
        cut.textContent = r.display_name;
        name.appendChild(cut);
        data.columns.forEach(function (c) { cell(tr, pct(r[c]), "num"); });
        cell(tr, String(r.uploads), "num");
        cell(tr, r.submitted_at.slice(0, 16).replace("T", " "));
        fresh.appendChild(tr);
      });
      if (!data.rows.length) {
        var et = document.createElement("tr");
        cell(et, "No graded submissions yet.", "muted").colSpan = width;
        fresh.appendChild(et);
      }
      tbody.parentNode.replaceChild(fresh, tbody);
    };
    // A signed-in student's table comes from the page itself (their row marked, the jump link).
    var mine = function () {
      return fetch(window.location.pathname, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-board-body]");
          var here = $("[data-board-body]", board);
          if (fresh && here) {
            here.replaceChildren.apply(here, Array.prototype.slice.call(fresh.childNodes));
            status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
          }
        });
    };
    var tick = function () {
      fetch(board.getAttribute("data-live-board"), { headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.frozen !== (board.getAttribute("data-frozen") === "yes")) {
            window.location.reload();  // the header and scope change with the freeze
            return;
          }
          if (data && String(data.version) !== version) {
            version = String(data.version);
            if (board.getAttribute("data-board-mine") === "yes") {
              return mine();  // the server marks the student's own row
            }
            render(data);
            status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
          }
        })
        .catch(function () { status.textContent = "Offline; retrying…"; })
        .then(function () { setTimeout(tick, every); });
    };
    setTimeout(tick, every);
  }
})();
