// Console behaviour: live queue upkeep, keyboard, time on card, reconnect recovery.
(function () {
  "use strict";
  var opened = 0;
  var socket = null;
  var me = document.body.dataset.username || "";

  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#queue-cards > .card")); }
  function selected() { return document.querySelector("#queue-cards > .card.selected"); }

  // Keep the queue true after out-of-band inserts: one card per proposal (the newest copy),
  // highest priority first, trimmed to the page size, with an empty-state line.
  function normalizeQueue() {
    var box = document.getElementById("queue-cards");
    if (!box) return;
    var seen = {};
    var list = cards();
    for (var i = list.length - 1; i >= 0; i--) {
      var id = list[i].dataset.id;
      if (seen[id]) {
        // keep the newest copy but remember when the analyst first saw it and the selection
        var newer = seen[id];
        if (list[i].dataset.shown) newer.dataset.shown = list[i].dataset.shown;
        if (list[i].classList.contains("selected")) newer.classList.add("selected");
        list[i].remove();
      } else { seen[id] = list[i]; }
    }
    list = cards();
    list.sort(function (a, b) { return parseFloat(b.dataset.priority) - parseFloat(a.dataset.priority); });
    var limit = parseInt(document.getElementById("queue").dataset.pageSize || "50", 10);
    list.forEach(function (card, index) {
      if (index >= limit) { card.remove(); return; }
      box.appendChild(card);
      if (!card.dataset.shown) card.dataset.shown = String(Date.now());
    });
    var pending = document.querySelector('[data-count="pending"]');
    var count = pending ? parseInt(pending.textContent, 10) : list.length;
    document.getElementById("queue-empty").hidden = cards().length > 0;
    document.getElementById("queue-more").hidden = !(count > cards().length);
    hideOwnReviewing();
  }

  function hideOwnReviewing() {
    document.querySelectorAll(".reviewing[data-reviewer]").forEach(function (el) {
      if (el.dataset.reviewer === me) { el.textContent = ""; }
      if (!el.dataset.since) {
        el.dataset.since = String(Date.now());
        setTimeout(function () { el.textContent = ""; }, 60000);
      }
    });
  }

  function select(card) {
    if (!card) return;
    var current = selected();
    if (current) current.classList.remove("selected");
    card.classList.add("selected");
    card.focus({ preventScroll: false });
    card.scrollIntoView({ block: "nearest" });
    if (socket) socket.send(JSON.stringify({ reviewing: card.dataset.id }));
  }

  function move(step) {
    var list = cards();
    if (!list.length) return;
    var index = list.indexOf(selected());
    index = index < 0 ? 0 : Math.min(list.length - 1, Math.max(0, index + step));
    select(list[index]);
  }

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (tag === "input" || tag === "textarea" || tag === "select") {
      if (event.key === "Escape") { event.target.blur(); var c = event.target.closest(".card"); if (c) c.focus(); }
      return;
    }
    var card = selected();
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (event.key === "a" && card) { card.querySelector("button.approve").click(); event.preventDefault(); }
    else if (event.key === "r" && card) { card.querySelector("input.reason").focus(); event.preventDefault(); }
    else if (event.key === "o" && card) { window.location = "/proposals/" + card.dataset.id + "/"; }
  });

  // Enter in the reason box rejects (the reason is what the analyst just typed).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !event.target.classList.contains("reason")) return;
    event.preventDefault();
    event.target.closest("form").querySelector("button.reject").click();
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest("#queue-cards > .card");
    if (card && !card.classList.contains("selected")) select(card);
  });

  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.decide");
    if (!form) return;
    var card = form.closest(".card");
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    var verdict = submitter ? submitter.value : event.detail.parameters.verdict;
    var reason = form.querySelector("input.reason");
    if (verdict === "reject" && reason.value.trim().length < 3) {
      event.preventDefault();
      reason.focus();
      reason.setAttribute("aria-invalid", "true");
      showFlash("A rejection needs a reason: type why, then press Enter.", false);
      return;
    }
    if (card && card.dataset.shown) {
      event.detail.parameters.seconds_on_card = ((Date.now() - parseInt(card.dataset.shown, 10)) / 1000).toFixed(1);
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.decide");
    if (!form || !event.detail.successful) return;
    var card = form.closest("#queue-cards > .card");
    var next = card && (card.nextElementSibling || card.previousElementSibling);
    if (card && /flash success/.test(event.detail.xhr.responseText)) {
      card.remove();
      normalizeQueue();
      if (next) select(next);
    }
  });

  function showFlash(text, ok) {
    var area = document.getElementById("flash");
    area.innerHTML = "";
    var p = document.createElement("p");
    p.className = "flash " + (ok ? "success" : "error");
    p.textContent = text;
    area.appendChild(p);
  }

  function setLive(text, ok) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.className = "live-status " + (ok ? "ok" : "down");
  }

  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    opened += 1;
    setLive("live", true);
    if (opened > 1) {
      // Whatever was broadcast while the socket was down is fetched now.
      if (document.getElementById("queue")) {
        htmx.ajax("GET", "/", { target: "#queue", swap: "outerHTML" });
      }
      htmx.ajax("GET", "/partials/stop-banner/", { target: "#stop-banner", swap: "outerHTML" });
    }
  });
  document.addEventListener("htmx:wsClose", function () { socket = null; setLive("reconnecting…", false); });
  document.addEventListener("htmx:wsAfterMessage", normalizeQueue);
  document.addEventListener("htmx:afterSettle", normalizeQueue);
  document.addEventListener("DOMContentLoaded", function () {
    normalizeQueue();
    var first = cards()[0];
    if (first) first.classList.add("selected");
  });
})();
