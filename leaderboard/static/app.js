// The pages' small behaviours: drag-and-drop upload, live status, live leaderboard.
// No inline scripts (CSP: script-src 'self'); every text goes in with textContent.
"use strict";

(function () {
  function $(sel, root) { return (root || document).querySelector(sel); }

  // ---- upload: a first look at the chosen zip's central directory, before a byte is sent.
  // The server checks the same and more (grader.intake.check_archive) and stays the judge:
  // this only refuses what is certain (not a zip at all; a required file not at the top
  // level), and when the file cannot be read here it is sent as it is.
  var EOCD = 0x06054b50, ZIP64_LOCATOR = 0x07064b50, ZIP64_EOCD = 0x06064b50, CENTRAL = 0x02014b50;
  var MAX_DIRECTORY = 16 * 1048576;  // a bigger directory is left to the server

  // done(view) with the bytes, or done(null); a throw in done (a DataView read past the end
  // of a damaged zip) becomes giveUp(): the server decides.
  function readBytes(file, start, end, done, giveUp) {
    var reader = new FileReader();
    var call = function (view) {
      try { done(view); } catch (err) { giveUp(); }
    };
    reader.onload = function () { call(new DataView(reader.result)); };
    reader.onerror = function () { call(null); };
    reader.readAsArrayBuffer(file.slice(start, end));
  }

  function u64(view, at) {
    return view.getUint32(at, true) + view.getUint32(at + 4, true) * 4294967296;
  }

  // done(names) with the entry names, or done(null) when the file is certainly no zip,
  // or done(undefined) when this script cannot tell (then the server decides).
  function zipNames(file, answer) {
    var answered = false;
    var done = function (names) {  // once, whatever throws later
      if (!answered) { answered = true; answer(names); }
    };
    var unknown = function () { done(undefined); };
    if (!window.FileReader || !window.DataView || !file.slice) { done(undefined); return; }
    if (file.size < 22) { done(null); return; }
    var tailStart = Math.max(0, file.size - (65535 + 22));
    readBytes(file, tailStart, file.size, function (tail) {
      if (!tail) { done(undefined); return; }
      var at = -1;
      for (var i = tail.byteLength - 22; i >= 0; i--) {
        if (tail.getUint32(i, true) === EOCD && i + 22 + tail.getUint16(i + 20, true) <= tail.byteLength) {
          at = i;
          break;
        }
      }
      if (at < 0) { done(null); return; }
      var count = tail.getUint16(at + 10, true);
      var size = tail.getUint32(at + 12, true);
      var end = tailStart + at;  // the directory ends where its end record starts
      var zip64 = count === 0xffff || size === 0xffffffff || tail.getUint32(at + 16, true) === 0xffffffff;
      if (!zip64 || at < 20 || tail.getUint32(at - 20, true) !== ZIP64_LOCATOR) {
        directory(end - size, size);
        return;
      }
      // The ZIP64 end record sits just before its locator (as Python's zipfile reads it), and
      // the directory just before that record: counting back is right even with bytes
      // prepended to the zip, which shift the recorded offsets.
      var record = end - 20 - 56;
      if (record < 0) { done(undefined); return; }
      readBytes(file, record, record + 56, function (z) {
        if (!z || z.byteLength < 56 || z.getUint32(0, true) !== ZIP64_EOCD) { done(undefined); return; }
        size = u64(z, 40);
        directory(record - size, size);
      }, unknown);
    }, unknown);

    function directory(start, size) {
      if (start < 0 || size > MAX_DIRECTORY) { done(undefined); return; }
      readBytes(file, start, start + size, function (cd) {
        if (!cd) { done(undefined); return; }
        var names = [], pos = 0;
        var utf8 = window.TextDecoder ? new TextDecoder("utf-8") : null;
        while (pos + 46 <= cd.byteLength && cd.getUint32(pos, true) === CENTRAL) {
          var nameLen = cd.getUint16(pos + 28, true);
          var bytes = new Uint8Array(cd.buffer, cd.byteOffset + pos + 46,
                                     Math.min(nameLen, cd.byteLength - pos - 46));
          names.push(utf8 ? utf8.decode(bytes) : String.fromCharCode.apply(null, bytes));
          pos += 46 + nameLen + cd.getUint16(pos + 30, true) + cd.getUint16(pos + 32, true);
        }
        done(pos === cd.byteLength ? names : undefined);
      }, unknown);
    }
  }

  function joinNames(items, word) {
    if (items.length === 1) { return items[0]; }
    return items.slice(0, -1).join(", ") + " " + (word || "and") + " " + items[items.length - 1];
  }

  // The reason to refuse ``file`` (see grader/intake.py _check_layout and _check_required,
  // whose wording this follows), or "" to send it; done(reason).
  function zipProblem(file, rules, done) {
    zipNames(file, function (names) {
      if (names === null) {
        done(file.name + " is not a zip file (it is damaged or another format, such as tar or rar); " +
             "zip your files with a standard zip tool and choose the zip.");
        return;
      }
      if (!names || !rules) { done(""); return; }
      var top = {}, nested = {};
      names.forEach(function (name) {
        if (name.charAt(name.length - 1) === "/") { return; }
        var cut = name.lastIndexOf("/");
        if (cut < 0) { top[name] = true; } else { nested[name.slice(cut + 1)] = name.slice(0, cut + 1); }
      });
      var alternatives = rules.alternatives || {};
      var missing = rules.required.filter(function (need) {
        return !top[need] && !(alternatives[need] || []).some(function (alt) { return top[alt]; });
      });
      if (!missing.length) { done(""); return; }
      var folder = "";
      missing.forEach(function (need) {
        [need].concat(alternatives[need] || []).forEach(function (name) {
          folder = folder || nested[name] || "";
        });
      });
      if (folder) {
        done("The zip holds your files inside the folder '" + folder + "' (" + joinNames(missing) +
             " not at the top level); zip the files themselves so that each sits at the top level " +
             "of the zip, not the folder.");
        return;
      }
      var hints = missing.filter(function (need) { return (alternatives[need] || []).length; })
        .map(function (need) { return joinNames(alternatives[need], "or") + " may stand in for " + need; });
      done("The zip is missing " + joinNames(missing) + "; add " + (missing.length > 1 ? "them" : "it") +
           " at the top level of the zip and choose it again" +
           (hints.length ? " (" + hints.join(", ") + ")" : "") + ".");
    });
  }

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
        input.dispatchEvent(new Event("change", { bubbles: true }));  // shown and checked
      }
    });
  }

  // ---- upload: send the form with XMLHttpRequest to show its progress (without script it
  // is an ordinary form post); a zip over the limit, or one zipProblem finds wrong (not a
  // zip, required files not at its top level), is refused before a byte is sent
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
      button.disabled = remaining <= 0;
    };
    var remaining = button.disabled ? 0 : 1;  // no attempts left: the page disables the button
    var rules = null;
    try { rules = JSON.parse(form.getAttribute("data-zip-rules") || "null"); } catch (err) { rules = null; }
    var checked = null, problemOf = "";
    var check = function (file, then) {
      if (checked === file) { then(problemOf); return; }
      zipProblem(file, rules, function (problem) {
        checked = file;
        problemOf = problem;
        then(problem);
      });
    };
    // A chosen (or dropped) file is looked at at once, so a wrong one is said before sending.
    fileInput.addEventListener("change", function () {
      var file = fileInput.files && fileInput.files[0];
      if (!file) { return; }
      if (file.size > Number(form.getAttribute("data-max-bytes"))) {
        fail(form.getAttribute("data-too-large"));  // the same words as on sending
        return;
      }
      check(file, function (problem) {
        if (!fileInput.files || fileInput.files[0] !== file) { return; }  // another one meanwhile
        if (problem) {
          fail(problem);
        } else {
          errorBox.hidden = true;
        }
      });
    });
    form.addEventListener("submit", function (e) {
      var file = fileInput.files && fileInput.files[0];
      if (!file) { return; }
      e.preventDefault();
      errorBox.hidden = true;
      if (file.size > Number(form.getAttribute("data-max-bytes"))) {
        fail(form.getAttribute("data-too-large"));
        return;
      }
      button.disabled = true;
      check(file, function (problem) {
        if (problem) {
          fail(problem);
        } else {
          send(file);
        }
      });
    });
    var send = function (file) {
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
    };
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
        // a failed row's reason; a pending one's place in line or running part (live.py)
        var brief = s.pending && s.progress ? s.progress.brief : "";
        reason.textContent = s.reason || brief;
        reason.title = s.reason ? s.message : "";
        reason.hidden = !(s.reason || brief);
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

  // ---- one submission: its place in the queue, then each part's state; reload when done
  var one = $("[data-poll-submission]");
  if (one) {
    var parts = $("[data-live-parts]", one);
    var sentence = $("[data-field=sentence]", one);
    poll(one.getAttribute("data-poll-submission"), 1000, function (s) {
      var st = one.querySelector("[data-field=status]");
      st.textContent = s.status_label;
      st.className = "status status-" + s.state;
      if (!s.pending) { window.location.reload(); return false; }
      var progress = s.progress || { parts: [], sentence: "" };
      if (sentence && progress.sentence) { sentence.textContent = progress.sentence; }
      if (parts && progress.parts.length) {
        parts.hidden = false;
        progress.parts.forEach(function (p) {
          var li = parts.querySelector('li[data-part="' + p.name + '"]');
          if (!li) { return; }
          li.className = "live-" + p.state;
          li.querySelector("[data-field=state]").textContent = p.label;
        });
      }
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
