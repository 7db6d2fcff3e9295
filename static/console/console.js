// Console behaviour: live queue upkeep, keyboard, time on card, reconnect recovery.
(function () {
  "use strict";
  var body = document.body;
  var me = body.dataset.username || "";
  var LIVE_CLOSE_CODES = [1006, 1011, 1012, 1013]; // the ws extension reconnects after these
  var socket = null;
  var opened = 0;
  var selectedId = null; // the card the analyst is on, kept across re-renders
  var selectedIndex = 0; // where it was, so that the next card takes its place
  var announced = null; // the card other analysts were told this one is reviewing
  var arrivedAt = {}; // proposal id -> ms when the card first reached this page
  var shownAt = {}; // proposal id -> ms when the card was first on screen
  var gone = {}; // proposal ids that left the queue; a late re-fetch must not bring them back
  var deciding = {}; // proposal ids this analyst has a decision in flight for
  var countersAt = 0;
  var refillTimer = null;

  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#queue-cards > .card")); }
  function cardById(id) { return document.getElementById("card-" + id); }
  function selected() { return selectedId ? cardById(selectedId) : null; }

  function showFlash(text, ok) {
    var area = document.getElementById("flash");
    if (!area) return;
    area.innerHTML = "";
    var p = document.createElement("p");
    p.className = "flash " + (ok === "info" ? "info" : ok ? "success" : "error");
    p.textContent = text;
    area.appendChild(p);
    scheduleFlashClear();
  }

  var flashTimer = null;
  function scheduleFlashClear() {
    // Success fades after a few seconds; an error stays long enough to be read.
    clearTimeout(flashTimer);
    var area = document.getElementById("flash");
    if (!area || !area.firstElementChild) return;
    var error = area.querySelector(".flash.error");
    flashTimer = setTimeout(function () { area.innerHTML = ""; }, error ? 15000 : 6000);
  }

  // --- live messages ------------------------------------------------------------------------
  // The server broadcasts one message to every page. Pieces with no target on this page
  // (a new card on the proposal page, a counter on the lists page) are dropped here instead
  // of raising htmx:oobErrorNoTarget; a card deleted under the analyst says what happened.
  htmx.defineExtension("console-live", {
    transformResponse: function (text, xhr) {
      if (xhr) return text; // ordinary htmx responses pass untouched
      var template = document.createElement("template");
      template.innerHTML = text;
      Array.prototype.slice.call(template.content.children).forEach(function (node) {
        var oob = node.getAttribute("hx-swap-oob") || "true";
        var colon = oob.indexOf(":");
        var target = colon >= 0 ? document.querySelector(oob.slice(colon + 1)) : document.getElementById(node.id);
        if (node.id && node.id.indexOf("reviewing-") === 0) { clearOtherReviews(node); }
        if (oob === "delete" && node.id.indexOf("card-") === 0) {
          var id = node.id.slice(5);
          gone[id] = Date.now();
          if (target && id === selectedId && !deciding[id] && node.dataset.note) {
            showFlash(node.dataset.note, "info");
          }
        }
        if (colon >= 0 && oob.slice(colon + 1) === "#queue-cards") {
          var card = node.querySelector(".card");
          if (card && gone[card.dataset.id]) { node.remove(); return; } // arrived out of order
          if (card && !arrivedAt[card.dataset.id]) arrivedAt[card.dataset.id] = Date.now();
        }
        if (node.id === "queue-counters") countersAt = Date.now();
        if (!target) node.remove();
      });
      return template.innerHTML;
    },
  });

  // "being reviewed by …": one analyst reviews one card at a time, and never sees their own.
  function clearOtherReviews(node) {
    var reviewer = node.getAttribute("data-reviewer");
    document.querySelectorAll(".reviewing[data-reviewer]").forEach(function (el) {
      if (el.id !== node.id && el.getAttribute("data-reviewer") === reviewer) {
        el.textContent = "";
        el.removeAttribute("data-reviewer");
      }
    });
    if (reviewer === me) node.textContent = "";
  }

  function expireReviews() {
    document.querySelectorAll(".reviewing[data-reviewer]").forEach(function (el) {
      if (el.dataset.reviewer === me) el.textContent = "";
      if (!el.dataset.since) {
        el.dataset.since = String(Date.now());
        setTimeout(function () { el.textContent = ""; }, 60000);
      }
    });
  }

  // --- the queue ----------------------------------------------------------------------------
  // Keep the queue true after out-of-band inserts: one card per proposal (the newest copy),
  // highest priority first, trimmed to the page size; refilled from the server when decided
  // cards leave room for ones that were below the fold.
  function normalizeQueue() {
    var box = document.getElementById("queue-cards");
    if (!box) return;
    var seen = {};
    var list = cards();
    for (var i = list.length - 1; i >= 0; i--) {
      var id = list[i].dataset.id;
      if (seen[id]) { carryOver(list[i], seen[id]); }
      if (seen[id] || gone[id]) { list[i].remove(); } else { seen[id] = list[i]; }
    }
    list = cards();
    // Stable sort: equal priorities keep their order, so cards do not jump around.
    list = list.map(function (card, index) { return [card, index]; }).sort(function (a, b) {
      return (parseFloat(b[0].dataset.priority) - parseFloat(a[0].dataset.priority)) || (a[1] - b[1]);
    }).map(function (pair) { return pair[0]; });
    var limit = parseInt(document.getElementById("queue").dataset.pageSize || "50", 10);
    var focusLost = !document.activeElement || document.activeElement === body;
    list.forEach(function (card, index) {
      if (index >= limit) { card.remove(); return; }
      if (box.children[index] !== card) box.insertBefore(card, box.children[index] || null);
      var cid = card.dataset.id;
      if (!arrivedAt[cid]) arrivedAt[cid] = Date.now();
      card.classList.toggle("mine", (card.dataset.deciders || "").split(" ").indexOf(me) >= 0);
      observe(card);
    });
    list = cards();
    var current = selected();
    list.forEach(function (card) { card.classList.toggle("selected", card === current); });
    if (!current && list.length) {
      // The card the analyst was on left (decided here or elsewhere): its neighbour takes over.
      var next = list[Math.min(selectedIndex, list.length - 1)];
      mark(next);
      if (focusLost) next.focus({ preventScroll: true });
    } else if (current) {
      selectedIndex = list.indexOf(current);
    }
    document.getElementById("queue-empty").hidden = list.length > 0;
    document.getElementById("queue-more").hidden = !(pendingCount() > list.length);
    if (queueShort()) scheduleRefill();
    expireReviews();
    refreshTimes();
  }

  // A newer copy of a card (another analyst's first approval) replaces the old one: keep
  // what the analyst typed, where the focus was, and who is reviewing it.
  function carryOver(older, newer) {
    var oldReason = older.querySelector("input.reason");
    var newReason = newer.querySelector("input.reason");
    if (oldReason && newReason && oldReason.value && !newReason.value) newReason.value = oldReason.value;
    if (older.contains(document.activeElement)) {
      var focusReason = document.activeElement === oldReason;
      (focusReason ? newReason : newer).focus({ preventScroll: true });
    }
    var oldReview = older.querySelector(".reviewing[data-reviewer]");
    var newReview = newer.querySelector(".reviewing");
    if (oldReview && newReview && !newReview.dataset.reviewer) newReview.replaceWith(oldReview);
  }

  function mark(card) {
    var current = selected();
    if (current) current.classList.remove("selected");
    card.classList.add("selected");
    selectedId = card.dataset.id;
    selectedIndex = cards().indexOf(card);
  }

  function select(card, keepFocus) {
    if (!card) return;
    mark(card);
    if (!keepFocus) card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
    // Only a card the analyst chose is announced, once: not the one picked for them on load.
    if (socket && announced !== card.dataset.id) {
      announced = card.dataset.id;
      socket.send(JSON.stringify({ reviewing: card.dataset.id }));
    }
  }

  function move(step) {
    var list = cards();
    if (!list.length) return;
    var index = list.indexOf(selected());
    index = index < 0 ? 0 : Math.min(list.length - 1, Math.max(0, index + step));
    select(list[index]);
  }

  function pendingCount() {
    var pending = document.querySelector('[data-count="pending"]');
    return pending ? parseInt(pending.textContent, 10) : cards().length;
  }

  // More pending than shown, with room on the page: cards below the page's limit moved up.
  function queueShort() {
    var queue = document.getElementById("queue");
    if (!queue) return false;
    var limit = parseInt(queue.dataset.pageSize || "50", 10);
    var shown = cards().length;
    return pendingCount() > shown && shown < limit;
  }

  function scheduleRefill() {
    if (refillTimer) return;
    // Checked again when due: the counts follow a decision by up to LIVE_COUNTERS_SECONDS, and
    // once they have caught up there may be nothing to fetch.
    refillTimer = setTimeout(function () { refillTimer = null; if (queueShort()) refetchQueue(); }, 800);
  }

  // Fetch the queue as the server has it now. Cards and counters that reached this page over
  // the socket while the request was in flight are newer than its answer, and are kept;
  // cards that left are not brought back; a reason being typed survives.
  function refetchQueue() {
    if (!document.getElementById("queue")) return;
    var typing = document.activeElement && document.activeElement.classList.contains("reason") ? document.activeElement : null;
    if (typing && typing.value) { scheduleRefill(); return; } // do not pull the box from under the analyst
    var started = Date.now();
    fetch("/", { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        var fresh = template.content.querySelector("#queue");
        var old = document.getElementById("queue");
        if (!fresh || !old) return; // signed out: the next page load shows the login
        var freshBox = fresh.querySelector("#queue-cards");
        cards().forEach(function (card) {
          if ((arrivedAt[card.dataset.id] || 0) >= started) freshBox.appendChild(card);
        });
        if (countersAt >= started) {
          fresh.querySelector("#queue-counters").replaceWith(document.getElementById("queue-counters"));
        }
        old.replaceWith(fresh);
        htmx.process(fresh);
        normalizeQueue();
      })
      .catch(function () { /* the socket's reconnect brings us back here */ });
  }

  function refetchStop() {
    fetch("/partials/stop-banner/", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        Array.prototype.slice.call(template.content.children).forEach(function (node) {
          var old = node.id && document.getElementById(node.id);
          if (old) { old.replaceWith(node); htmx.process(node); }
        });
      })
      .catch(function () {});
  }

  // The proposal page's timeline comes from the audit log; rather than send it to every
  // console with each broadcast, the page showing that proposal fetches it when it changes.
  // Likewise the held list, whose re-confirm buttons appear once the emergency stop is lifted.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.id) return;
    if (target.id === "stop-banner") { scheduleHeldRefresh(); return; }
    if (target.id.indexOf("state-") !== 0) return;
    var timeline = document.getElementById("timeline-" + target.id.slice(6));
    if (!timeline || timelineTimer) return;
    // One fetch for a burst of updates (htmx reports a swap once per settled element).
    timelineTimer = setTimeout(function () { timelineTimer = null; refetchSection(timeline.id); }, 300);
  });
  var timelineTimer = null;
  var heldTimer = null;
  // One fetch for a burst (htmx reports a swap once per settled element of a message).
  function scheduleHeldRefresh() {
    if (!document.getElementById("held-executions") || heldTimer) return;
    heldTimer = setTimeout(function () { heldTimer = null; refetchSection("held-executions"); }, 300);
  }
  // Replace the element `id` with the same element of this page as the server renders it now.
  function refetchSection(id) {
    fetch(window.location.pathname, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        var fresh = template.content.getElementById(id);
        var current = document.getElementById(id);
        if (fresh && current) { current.replaceWith(fresh); htmx.process(fresh); }
      })
      .catch(function () {});
  }

  // --- time on card ---------------------------------------------------------------------------
  // "Shown" is when at least half the card was first on screen, not when it was appended
  // below the fold: that is what the fatigue report's time on card means.
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      var id = entry.target.dataset.id;
      if (entry.isIntersecting && !shownAt[id]) shownAt[id] = Date.now();
    });
  }, { threshold: 0.5 }) : null;

  function observe(card) {
    if (!observer || card.dataset.observed) return;
    card.dataset.observed = "1";
    observer.observe(card);
  }

  var loadedAt = Date.now();
  function secondsOnCard(id) {
    var since = shownAt[id] || arrivedAt[id] || loadedAt;
    return ((Date.now() - since) / 1000).toFixed(1);
  }

  // --- relative times ------------------------------------------------------------------------
  // Cards stay on screen for minutes; "escalates in 14 min" must not stay frozen at its render.
  function relative(ms) {
    var minutes = Math.round(Math.abs(ms) / 60000);
    var text;
    if (minutes < 1) text = "under a minute";
    else if (minutes < 90) text = minutes + " min";
    else text = Math.round(minutes / 60) + " h";
    return ms >= 0 ? "in " + text : text + " ago";
  }

  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time.rel[datetime]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      el.textContent = relative(at - now);
      el.title = new Date(at).toLocaleString();
    });
  }

  // --- keyboard -----------------------------------------------------------------------------
  function decideTarget() {
    // On the queue the selected card; on a proposal page its decide panel.
    return selected() || document.querySelector(".decide-panel");
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") {
      if (event.key === "Escape") {
        event.target.blur();
        var owner = event.target.closest(".card");
        if (owner) owner.focus();
      } else if (event.key === "Enter" && event.target.classList.contains("reason")) {
        // Enter in the reason box rejects with what the analyst just typed.
        event.preventDefault();
        event.target.closest("form").querySelector("button.reject").click();
      }
      return;
    }
    if (body.dataset.canDecide !== "true" && (event.key === "a" || event.key === "r")) return;
    var target = decideTarget();
    if ((event.key === "a" || event.key === "r") && target && target.classList.contains("mine")) {
      showFlash("You already approved this one; another analyst must give the next approval.", false);
      event.preventDefault();
      return;
    }
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (event.key === "a" && target) { target.querySelector("button.approve").click(); event.preventDefault(); }
    else if (event.key === "r" && target) { target.querySelector("input.reason").focus(); event.preventDefault(); }
    else if (event.key === "o" && selected()) {
      window.location = "/proposals/" + selected().dataset.id + "/";
    }
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest("#queue-cards > .card");
    // A click on a button or field keeps its focus: moving it to the card would make htmx
    // forget which submit button was pressed.
    var control = event.target.closest("button, a, input, summary");
    if (card && (card.dataset.id !== selectedId || announced !== selectedId)) select(card, !!control);
  });

  // --- decisions ------------------------------------------------------------------------------
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.decide");
    if (!form) return;
    var holder = form.closest("[data-id]");
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    var verdict = submitter ? submitter.value : event.detail.parameters.verdict;
    if (verdict) event.detail.parameters.verdict = verdict;
    var reason = form.querySelector("input.reason");
    if (verdict === "reject" && reason.value.trim().length < 3) {
      // The server refuses it too; saying so here saves a round trip and keeps focus.
      event.preventDefault();
      reason.focus();
      reason.setAttribute("aria-invalid", "true");
      showFlash("A rejection needs a reason: type why, then press Enter.", false);
      return;
    }
    reason.removeAttribute("aria-invalid");
    if (holder) {
      deciding[holder.dataset.id] = true;
      event.detail.parameters.seconds_on_card = secondsOnCard(holder.dataset.id);
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.decide");
    if (!form) return;
    var holder = form.closest("[data-id]");
    if (holder) delete deciding[holder.dataset.id];
    var decided = /data-outcome="decided"/.test(event.detail.xhr.responseText || "");
    if (holder && decided && event.detail.successful) {
      // Usually the websocket already removed it; without a socket this keeps the page true.
      gone[holder.dataset.id] = Date.now();
      holder.remove();
      normalizeQueue();
    }
  });

  // --- live status ----------------------------------------------------------------------------
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
      refetchQueue();
      refetchStop();
      scheduleHeldRefresh();
    }
  });
  document.addEventListener("htmx:wsClose", function (event) {
    socket = null;
    var code = event.detail.event && event.detail.event.code;
    if (LIVE_CLOSE_CODES.indexOf(code) >= 0) setLive("reconnecting…", false);
    else setLive("offline: reload the page", false);
  });
  document.addEventListener("htmx:wsAfterMessage", normalizeQueue);
  document.addEventListener("htmx:afterSettle", function () { normalizeQueue(); scheduleFlashClear(); });
  document.addEventListener("DOMContentLoaded", function () {
    var first = cards()[0];
    if (first) mark(first);
    normalizeQueue();
    scheduleFlashClear();
  });
  setInterval(refreshTimes, 20000);

  // A shift is long and a busy queue sees thousands of cards: forget what no longer matters.
  setInterval(function () {
    var cutoff = Date.now() - 10 * 60 * 1000;
    Object.keys(gone).forEach(function (id) { if (gone[id] < cutoff) delete gone[id]; });
    Object.keys(arrivedAt).forEach(function (id) {
      if (!cardById(id)) { delete arrivedAt[id]; delete shownAt[id]; }
    });
  }, 60000);
})();
