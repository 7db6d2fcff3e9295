// Console behaviour: placing the server's live cards, keyboard, time on card, reconnect
// recovery, and the rules that keep a key press from deciding anything the analyst did not
// mean to decide. The order of the queue is the server's: a live card names the cards it goes
// before (approvals/live.py), and this script only picks the first of them the page has.
(function () {
  "use strict";
  var body = document.body;
  var me = body.dataset.username || "";
  var LIVE_CLOSE_CODES = [1006, 1011, 1012, 1013]; // the ws extension reconnects after these
  // The server's codes for a session that ended and for a user with no console role left
  // (approvals/consumers.py); the ws extension does not reconnect after them.
  var SIGNED_OUT = 4401;
  var NOT_ALLOWED = 4403;
  // A shortcut acts only on a card selected, on screen and where it is for at least this
  // long: a card that just arrived, moved or changed under the analyst is not what they read.
  var STEADY_MS = 300;
  var socket = null;
  var opened = 0;
  var selectedId = null; // the card the analyst is on, kept across re-renders
  var selectedIndex = 0; // where it was, so that after a decision the next card takes its place
  var advanceOnSwap = false; // the selected card left with the analyst's own decision (transformLive)
  var announced = null; // the card other analysts were told this one is reviewing
  var arrivedAt = {}; // proposal id -> ms when the card first reached this page
  var shownAt = {}; // proposal id -> ms when the card was first on screen
  // Proposal ids that left the queue -> the server's clock (ms) when that was rendered. An
  // older copy of the card (a late message, a re-fetch started before) must not bring it back;
  // a newer one (an approval undone) does.
  var gone = {};
  var deciding = {}; // proposal ids this analyst has a decision in flight for
  var mineIds = {}; // proposal ids this analyst approved that wait for another approver
  var visibleSince = typeof WeakMap === "function" ? new WeakMap() : null; // element -> ms
  var watch = { el: null, id: null, top: 0, since: 0, why: "selected" }; // see noteSteadiness
  var countersAt = 0;
  // While the queue is being fetched after a reconnect: the live messages that arrive
  // meanwhile, applied again over the fetched queue where newer than its render.
  var resync = null;
  var refocus = null; // {id, reason}: a replaced card held the focus; it goes to the new copy

  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#queue-cards > .card")); }
  // The cards the analyst sees, in the order shown: not those folded into their duplicate
  // group's card or outside the filter, and the ones that wait for someone else last.
  function shownCards() {
    var list = cards().filter(function (card) {
      return !card.classList.contains("grouped") && !card.classList.contains("filtered-out");
    });
    return list.filter(function (c) { return !c.classList.contains("mine"); })
      .concat(list.filter(function (c) { return c.classList.contains("mine"); }));
  }
  function cardById(id) { return document.getElementById("card-" + id); }
  function selected() { return selectedId ? cardById(selectedId) : null; }

  // --- the analyst's filter ---------------------------------------------------------------------
  // The same rules as selectors.QueueFilter, applied to the data attributes the server renders
  // on every card: live cards are one broadcast for every console, so each page hides what
  // lies outside its own filter.
  function currentFilter() {
    var form = document.getElementById("queue-filter");
    if (!form) return null;
    var f = {
      agent: form.elements.agent.value, action: form.elements.action.value,
      target: form.elements.target.value.trim().toLowerCase(), severity: form.elements.severity.value,
      escalated: form.elements.escalated.checked, awaitingSenior: form.elements.awaiting_senior.checked,
    };
    var active = f.agent || f.action || f.target || f.severity || f.escalated || f.awaitingSenior;
    return active ? f : null;
  }
  function matches(card, f) {
    if (!f) return true;
    var d = card.dataset;
    return (!f.agent || d.agent === f.agent) && (!f.action || d.action === f.action) &&
      (!f.target || (d.target || "").indexOf(f.target) >= 0) &&
      (!f.severity || d.severity === f.severity) && (!f.escalated || d.escalated === "1") &&
      (!f.awaitingSenior || d.awaitingSenior === "1");
  }
  function applyFilter() {
    var f = currentFilter();
    var shown = 0;
    cards().forEach(function (card) {
      var out = !matches(card, f);
      card.classList.toggle("filtered-out", out);
      if (!out && !card.classList.contains("grouped")) shown += 1;
    });
    var note = document.querySelector("#queue-filter .filter-shown");
    if (note) note.textContent = f ? shown + " shown" : "";
  }
  function queueUrl() {
    return body.dataset.queueUrl + (document.getElementById("queue-filter") ? window.location.search : "");
  }

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

  // An informative line under what the flash already says.
  function addFlash(text) {
    var area = document.getElementById("flash");
    if (!area) return;
    var said = Array.prototype.some.call(area.children, function (el) { return el.textContent === text; });
    if (said) return; // a third quick press says nothing new
    var p = document.createElement("p");
    p.className = "flash info";
    p.textContent = text;
    area.appendChild(p);
    scheduleFlashClear();
  }

  var flashTimer = null;
  function scheduleFlashClear() {
    // Success fades after a few seconds; an error stays long enough to be read.
    clearTimeout(flashTimer);
    var area = document.getElementById("flash");
    keepClear();
    if (!area || !area.firstElementChild) return;
    var error = area.querySelector(".flash.error");
    flashTimer = setTimeout(function () { area.innerHTML = ""; }, error ? 15000 : 6000);
  }

  // --- messages clear of the controls ----------------------------------------------------------
  // The flash message and the undo toasts stand at the bottom of the screen. While the selected
  // card's decision controls, or the element with the focus, would be under one of them, it
  // stands at the top instead (below the header), so that nothing the analyst is about to use
  // is hidden. Re-placed whenever either may have moved: a message, a selection, a scroll.
  function overlaps(a, b) {
    return a.height > 0 && b.height > 0 && a.left < b.right && b.left < a.right &&
      a.top < b.bottom && b.top < a.bottom;
  }
  function controlRects() {
    var rects = [];
    var target = decideTarget();
    if (target) {
      target.querySelectorAll("form.decide, form.group-decide").forEach(function (form) {
        rects.push(form.getBoundingClientRect());
      });
    }
    var active = document.activeElement;
    if (active && active !== document.body && active.getBoundingClientRect) {
      rects.push(active.getBoundingClientRect());
    }
    var stop = document.querySelector("#stop-control[open] .stop-form");
    if (stop) rects.push(stop.getBoundingClientRect());
    return rects;
  }
  // Where `el` stands at the bottom: its box there, from the gap below it noted while it was
  // there (console.css places it; a narrow screen lifts the tray above the flash).
  function bottomBox(el, box) {
    if (!el.classList.contains("at-top")) el.dataset.gap = String(window.innerHeight - box.bottom);
    var bottom = window.innerHeight - Number(el.dataset.gap || 16);
    return { left: box.left, right: box.right, top: bottom - box.height, bottom: bottom, height: box.height };
  }
  function place(el, top) { // a number of pixels from the top of the screen, or null: the bottom
    var want = top === null ? "" : top + "px";
    if (el.classList.contains("at-top") !== (top !== null)) el.classList.toggle("at-top", top !== null);
    if (el.style.top !== want) el.style.top = want; // CSSOM, which the content security policy allows
  }
  function keepClear() {
    var header = document.querySelector(".topbar");
    var next = Math.max(8, (header ? header.getBoundingClientRect().bottom : 0) + 8);
    var rects = null;
    ["flash", "undo-tray"].forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) return;
      if (!el.firstElementChild) { place(el, null); return; }
      rects = rects || controlRects();
      var box = el.getBoundingClientRect();
      var low = bottomBox(el, box);
      var high = { left: box.left, right: box.right, top: next, bottom: next + box.height, height: box.height };
      var covers = function (at) { return rects.some(function (r) { return overlaps(at, r); }); };
      var top = covers(low) && !covers(high) ? next : null;
      place(el, top);
      if (top !== null) next = top + box.height + 8; // the tray under the flash, not over it
    });
  }
  var clearFrame = 0;
  function keepClearSoon() {
    if (clearFrame) return;
    clearFrame = requestAnimationFrame(function () { clearFrame = 0; keepClear(); });
  }
  window.addEventListener("scroll", keepClearSoon, { passive: true });
  window.addEventListener("resize", keepClearSoon);
  document.addEventListener("focusin", keepClearSoon);

  // --- live messages ------------------------------------------------------------------------
  // The server broadcasts one message to every page. Pieces with no target on this page
  // (a new card on the proposal page, a counter on the lists page) are dropped here instead
  // of raising htmx:oobErrorNoTarget; a card deleted under the analyst says what happened.
  htmx.defineExtension("console-live", {
    transformResponse: function (text, xhr) {
      if (xhr) return text; // ordinary htmx responses pass untouched
      lastWord = Date.now();
      if (resync) resync.replay.push(text);
      return transformLive(text, 0);
    },
  });

  // An approval's undo toast over the socket (approvals/sessions.py): one this page has already
  // (from its own answer, or an earlier copy) is not added again. False when none is left.
  function liveUndoToasts(node) {
    Array.prototype.slice.call(node.querySelectorAll(".undo-toast")).forEach(function (toast) {
      if (document.getElementById(toast.id)) toast.remove();
    });
    if (node.querySelector(".undo-toast")) return true;
    node.remove();
    return false;
  }

  // Nodes rendered at or before `notAfter` (the server's clock) are dropped: on a replay over
  // a freshly fetched queue, that queue already shows them.
  function transformLive(text, notAfter) {
    var template = document.createElement("template");
    template.innerHTML = text;
    Array.prototype.slice.call(template.content.children).forEach(function (node) {
      if (node.dataset.beat !== undefined) { node.remove(); return; } // only says the line holds
      var at = Number(node.dataset.at) || 0;
      if (notAfter && at && at <= notAfter) { node.remove(); return; }
      if (node.dataset.contextFor !== undefined) { applyContext(node, at); node.remove(); return; }
      if (node.dataset.card) node = placeCard(node, at);
      if (!node) return;
      if (node.id === "undo-tray" && !liveUndoToasts(node)) return;
      var oob = node.getAttribute("hx-swap-oob") || "true";
      var colon = oob.indexOf(":");
      var target = colon >= 0 ? document.querySelector(oob.slice(colon + 1)) : document.getElementById(node.id);
      if (node.id && node.id.indexOf("reviewing-") === 0) { clearOtherReviews(node); }
      if (oob === "delete" && node.id.indexOf("card-") === 0 && !node.dataset.below) {
        var id = node.id.slice(5);
        gone[id] = Math.max(gone[id] || 0, at || 1);
        // The card the analyst is on, or holds the focus; on a proposal page, its decide panel.
        var working = target && (id === selectedId || target.contains(document.activeElement) ||
          target.classList.contains("decide-panel"));
        if (working && !deciding[id]) {
          // Decided or withdrawn elsewhere while the analyst was on it: the selection does
          // not jump to another card (the next key would act there); it stays put and says so.
          leaveInPlace(target, node.dataset.note);
          node.remove();
          return;
        }
        if (id === selectedId && deciding[id]) {
          // The analyst's own decision, whose update came before its answer: the answer is
          // addressed to the card's form, which leaves with the card, so htmx never delivers
          // it to this page. The next card takes the selection once this swap is done
          // (refreshQueue), as after an answer.
          delete deciding[id];
          advanceOnSwap = true;
        }
      }
      if (oob === "delete" && node.dataset.below && currentFilter()) {
        // Pushed below the page every console shows; a filtered page is not that page, and
        // the card still matches or not as before.
        node.remove();
        return;
      }
      if (node.id === "queue-counters") countersAt = Date.now();
      if (!target) node.remove();
    });
    return template.innerHTML;
  }

  // A live card, placed where the server says: in place of its older copy, else before the
  // first of the cards it names (data-before) that this page has, else at the end. Returns
  // the node to swap, or null when there is nothing to do.
  function placeCard(node, at) {
    var id = node.dataset.card;
    var box = document.getElementById("queue-cards");
    if (!box) { notePanel(node); node.remove(); return null; }
    if (gone[id] && at <= gone[id]) { node.remove(); return null; } // older than its leaving
    delete gone[id]; // pending as of a render after it left: back (an approval was undone)
    var older = cardById(id);
    if (older && older.closest("#queue-cards")) {
      if (node.dataset.fill) { node.remove(); return null; } // already on this page
      var newer = node.querySelector(".card");
      carryOver(older, newer);
      newer.setAttribute("hx-swap-oob", "true");
      node.replaceWith(newer);
      return newer;
    }
    var anchors = (node.dataset.before || "").split(" ");
    for (var i = 0; i < anchors.length; i++) {
      var next = anchors[i] && cardById(anchors[i]);
      if (next && next.parentNode === box) {
        node.setAttribute("hx-swap-oob", "beforebegin:#card-" + anchors[i]);
        break;
      }
    }
    if (!arrivedAt[id]) arrivedAt[id] = Date.now();
    return node;
  }

  // A proposal's page has no queue: from a newer copy of its card its decide panel takes only
  // whether the next approval must be a senior's (console.css then hides Approve from others).
  function notePanel(node) {
    var newer = node.querySelector(".card");
    var panel = newer && document.getElementById("card-" + newer.dataset.id);
    if (!panel || !panel.classList.contains("decide-panel")) return;
    if (newer.dataset.needsSenior) panel.dataset.needsSenior = "1";
    else delete panel.dataset.needsSenior;
  }

  // --- duplicate groups and a card's context -----------------------------------------------------
  // Pending proposals with the same action and canonical target are one decision. The page
  // shows one card per group (the selected one, else the one already shown, else the first in
  // the queue's order) and keeps the others in the page, out of sight, where the server's
  // placement expects them. What surrounds a card (its group, the target's other open
  // proposals and its state in the connector) is rendered once per change for every console,
  // in a message that follows the card's (approvals/live.py, context_changed), and copied here
  // into every card of that action and target.
  var contextAt = {}; // group key -> server's clock of the newest context applied
  var groupLead = {}; // group key -> the proposal id shown for the group

  function sameGroup(key) {
    return cards().filter(function (card) { return card.dataset.group === key; });
  }

  function applyContext(node, at) {
    var key = node.dataset.contextFor;
    if (at && contextAt[key] && at < contextAt[key]) return; // an older rendering
    contextAt[key] = at || contextAt[key] || 0;
    sameGroup(key).forEach(function (card) { fillContext(card, node); });
  }

  // Put the context parts of `source` (a context message, or an older copy of the card) into
  // `card`, keeping a box the analyst is typing in.
  function fillContext(card, source) {
    ["ctx-facts", "ctx-group"].forEach(function (part) {
      var fresh = source.querySelector("." + part);
      var old = card.querySelector("." + part);
      if (!fresh || !old || fresh === old) return;
      var typing = old.querySelector("input.reason");
      if (typing && typing.value && old.contains(document.activeElement)) return;
      var copy = fresh.cloneNode(true);
      old.replaceWith(copy);
      if (card.isConnected) htmx.process(copy);
    });
  }

  function arrangeGroups() {
    var byKey = {};
    cards().forEach(function (card) {
      var key = card.dataset.group;
      if (!key || card.classList.contains("filtered-out")) { card.classList.remove("grouped"); return; }
      (byKey[key] = byKey[key] || []).push(card);
    });
    Object.keys(groupLead).forEach(function (key) { if (!byKey[key]) delete groupLead[key]; });
    Object.keys(byKey).forEach(function (key) {
      var members = byKey[key];
      // The card shown for the group is one this analyst can still act on, when there is one:
      // a card they approved, waiting for someone else, would hide the others behind it.
      var open = members.filter(function (c) { return !c.classList.contains("mine"); });
      var pool = open.length ? open : members;
      var lead = members.filter(function (c) { return c.dataset.id === selectedId; })[0] ||
        pool.filter(function (c) { return c.dataset.id === groupLead[key]; })[0] || pool[0];
      groupLead[key] = lead.dataset.id;
      members.forEach(function (card) {
        card.classList.toggle("grouped", card !== lead);
        card.classList.toggle("group-lead", card === lead && members.length > 1);
      });
    });
  }

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
  // After live cards were swapped in: what depends on this analyst (their own approvals, the
  // selection, time on card), not on the order, which is the server's.
  function refreshQueue() {
    var box = document.getElementById("queue-cards");
    if (!box) return;
    var list = cards();
    var nowMine = null;
    list.forEach(function (card) {
      var cid = card.dataset.id;
      if (!arrivedAt[cid]) arrivedAt[cid] = Date.now();
      var mine = (card.dataset.deciders || "").split(" ").indexOf(me) >= 0;
      card.classList.toggle("mine", mine);
      if (mine && !mineIds[cid] && cid === selectedId) nowMine = cid;
      if (mine) mineIds[cid] = true; else delete mineIds[cid];
      observe(card);
    });
    if (nowMine) {
      // The selected card just became one this analyst approved and that waits for someone
      // else (a senior): it moves below the others, and the next card takes its place, as
      // after a decision (advanceAfterDecision, below).
      selectedId = null;
      if (refocus && refocus.id === nowMine) refocus = null;
      // Its buttons are gone; the focus leaves with the selection (advanceAfterDecision gives
      // it to the next card), or a later copy of this card would take it back.
      var left = cardById(nowMine);
      if (left && left.contains(document.activeElement)) document.activeElement.blur();
    }
    applyFilter();
    arrangeGroups();
    var waiting = document.getElementById("queue-waiting");
    if (waiting) waiting.hidden = !list.some(function (c) { return c.classList.contains("mine") && !c.classList.contains("grouped"); });
    var current = selected();
    list.forEach(function (card) { card.classList.toggle("selected", card === current); });
    // A card that left is not replaced by another: see leaveInPlace and advanceAfterDecision.
    if (current) selectedIndex = shownCards().indexOf(current);
    if (advanceOnSwap && !current) advanceAfterDecision();
    advanceOnSwap = false;
    if (refocus) {
      var card = cardById(refocus.id);
      var target = card && (refocus.reason ? card.querySelector("input.reason") : card);
      if (target) target.focus({ preventScroll: true });
      refocus = null;
    }
    noteSteadiness();
    // Empty is what the analyst sees: live cards outside a filter are on the page, hidden.
    document.getElementById("queue-empty").hidden = shownCards().length > 0;
    expireReviews();
    refreshTimes();
    countPicks();
    if (nowMine) advanceAfterDecision();
  }

  // A newer copy of a card (another analyst's first approval) replaces the old one: keep
  // what the analyst typed, where the focus was, and who is reviewing it.
  function carryOver(older, newer) {
    var oldReason = older.querySelector("input.reason");
    var newReason = newer.querySelector("input.reason");
    if (oldReason && newReason && oldReason.value) newReason.setAttribute("value", oldReason.value);
    if (older.contains(document.activeElement)) {
      refocus = { id: older.dataset.id, reason: document.activeElement === oldReason };
    }
    // A live card comes without its context, which follows: until then it keeps the old one.
    var loaded = newer.querySelector(".ctx-facts[data-loaded='1']");
    if (!loaded) fillContext(newer, older);
    var oldPick = older.querySelector("input.pick");
    var newPick = newer.querySelector("input.pick");
    if (oldPick && newPick && oldPick.checked) newPick.setAttribute("checked", "");
    var oldReview = older.querySelector(".reviewing[data-reviewer]");
    var newReview = newer.querySelector(".reviewing");
    if (oldReview && newReview && !newReview.dataset.reviewer) newReview.replaceWith(oldReview.cloneNode(true));
  }

  function mark(card) {
    var current = selected();
    if (current) current.classList.remove("selected");
    card.classList.add("selected");
    selectedId = card.dataset.id;
    selectedIndex = shownCards().indexOf(card);
    noteSteadiness();
    keepClearSoon();
  }

  // The card the analyst was on left the queue (another analyst decided it, the agent withdrew
  // it, it expired): a notice takes its place, keeps the focus if the card had it, and is read
  // out. Nothing is selected until the analyst chooses a card, so the keys they were typing
  // (the rest of a reason, say) cannot act on a card they never looked at.
  function leaveInPlace(card, note, withLink) {
    var hadFocus = card.contains(document.activeElement);
    var inQueue = !!card.closest("#queue-cards");
    var text = (note || "This proposal is no longer pending.").replace(/\.$/, "");
    // The analyst's own decision from another tab or window is theirs, not a colleague's.
    var me = body.dataset.username;
    if (me && text.slice(-(" by " + me).length) === " by " + me) {
      text = text.slice(0, -me.length) + "you, in another tab or window";
    }
    text += inQueue ? " — select another card (j, k or a click)." : ".";
    var notice = document.createElement("div");
    notice.className = "card-left";
    notice.tabIndex = -1;
    notice.dataset.left = card.dataset.id || "";
    notice.textContent = text;
    var link = withLink ? card.querySelector("a.details") : null;
    if (link) { // the notice links to the proposal's page, which says what became of it
      var open = document.createElement("a");
      open.href = link.getAttribute("href");
      open.textContent = "Open its page";
      notice.append(" ", open);
    }
    // A note or reason the analyst was typing is not thrown away with the card: it stays in
    // the notice, to be copied, until they move on. If they were typing, the keys that follow
    // still go there (see keepTyping), not to the shortcuts.
    // The box with the focus (the card's own or its group's), else the card's own.
    var active = document.activeElement;
    var box = active && card.contains(active) && active.matches("input.reason") ? active
      : card.querySelector("input.reason");
    var typing = !!box && active === box;
    if (box && (box.value.trim() || typing)) {
      var kept = document.createElement("p");
      kept.className = "unsent";
      notice.appendChild(kept);
      showTyped(kept, box.value);
      if (typing) {
        var hint = document.createElement("p");
        hint.className = "unsent-hint";
        hint.textContent = "Your keys go on into this note, not to the shortcuts, until you press Esc or click.";
        notice.appendChild(hint);
        typingInto = kept;
      }
    }
    card.replaceWith(notice);
    if (inQueue && card.dataset.id === selectedId) selectedId = null;
    if (hadFocus) notice.focus({ preventScroll: true });
    showFlash(text, "info");
  }

  // Keys meant for the box: an analyst typing in a card that left goes on typing for a moment,
  // and the j of "just", the o of "so" and the a of "ask" must not select, open or approve
  // anything. Until Esc or a click, printable keys (and Backspace) edit the kept note.
  var typingInto = null; // the notice's .unsent paragraph while keys still go there
  function showTyped(kept, text) {
    kept.dataset.text = text;
    kept.textContent = "What you had typed, not sent: “" + text.trim() + "”";
  }
  function stopTyping() {
    if (!typingInto) return;
    var hint = typingInto.parentNode && typingInto.parentNode.querySelector(".unsent-hint");
    // Said in place, in a line of its own as before: the cards below do not move.
    if (hint) hint.textContent = "Keys act again: j, k or a click selects a card.";
    typingInto = null;
  }
  function keptTyping(event) {
    if (!typingInto) return false;
    if (!typingInto.isConnected) {
      // The notice went (the queue was re-read): this key still was not meant as a shortcut.
      typingInto = null;
      event.preventDefault();
      showFlash("Keys act again: select a card with j, k or a click.", "info");
      return true;
    }
    var text = typingInto.dataset.text || "";
    if (event.key === "Escape") {
      stopTyping();
      showFlash("Keys act again: select a card with j, k or a click.", "info");
    } else if (event.key === "Backspace") {
      showTyped(typingInto, Array.from(text).slice(0, -1).join("")); // a whole character
    } else if (Array.from(event.key).length === 1) { // one character, an emoji's two halves too
      showTyped(typingInto, text + event.key);
    } else if (event.key !== "Enter") {
      return false; // arrows, Tab and the like keep their own meaning
    }
    event.preventDefault();
    return true;
  }
  document.addEventListener("pointerdown", stopTyping, true);

  // Removing a notice moves the cards below it: never between a press and its release, or
  // the click would land on whatever moved under the pointer (see the click listener).
  function clearNotices() {
    document.querySelectorAll(".card-left").forEach(function (el) { el.remove(); });
    noteSteadiness();
  }

  function select(card, keepFocus) {
    if (!card) return;
    var hadFocus = document.activeElement && document.activeElement.classList.contains("card-left");
    if (hadFocus) keepFocus = false; // the focus was on the notice: it moves to the new card
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
    var list = shownCards();
    if (!list.length) return;
    var index = list.indexOf(selected());
    var notice = document.querySelector("#queue-cards > .card-left");
    if (index < 0 && notice) {
      // Nothing selected since the card left: j takes the card below its notice, k the one above.
      var after = notice.nextElementSibling;
      while (after && !after.classList.contains("card")) after = after.nextElementSibling;
      var below = after ? list.indexOf(after) : list.length;
      index = Math.min(list.length - 1, Math.max(0, step > 0 ? below : below - 1));
    } else if (index < 0) {
      index = 0;
    } else {
      index = Math.min(list.length - 1, Math.max(0, index + step));
    }
    clearNotices();
    select(list[index]);
  }

  // After the analyst's own decision the next card takes the place of the one decided (the
  // keyboard flow through a queue); STEADY_MS keeps a second press from deciding it unseen.
  function advanceAfterDecision() {
    var list = shownCards();
    if (!list.length || selected()) return;
    var next = list[Math.min(selectedIndex, list.length - 1)];
    mark(next);
    if (!document.activeElement || document.activeElement === body) {
      next.focus({ preventScroll: true });
    }
  }

  // Fetch the queue as the server has it now and put it in place of this page's. Live
  // messages that arrive meanwhile are applied again over it where newer than its render;
  // cards that left are not brought back; a reason being typed survives.
  function resyncQueue() {
    if (!document.getElementById("queue") || resync) return;
    var typing = document.activeElement && document.activeElement.classList.contains("reason") ? document.activeElement : null;
    if (typing && typing.value) { setTimeout(resyncQueue, 800); return; } // do not pull the box from under the analyst
    var started = Date.now();
    resync = { replay: [] };
    fetch(queueUrl(), { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var replay = resync.replay;
        resync = null;
        var template = document.createElement("template");
        template.innerHTML = html;
        var fresh = template.content.querySelector("#queue");
        var old = document.getElementById("queue");
        if (!fresh || !old) return; // signed out: the next page load shows the login
        var freshBox = fresh.querySelector("#queue-cards");
        var freshAt = Number(fresh.dataset.at) || 0;
        Array.prototype.slice.call(freshBox.querySelectorAll(":scope > .card")).forEach(function (card) {
          var id = card.dataset.id;
          if (gone[id] && freshAt <= gone[id]) { card.remove(); return; } // rendered before it left
          delete gone[id]; // pending as of a render after it left: back (an approval was undone)
          var older = cardById(id);
          if (older) carryOver(older, card);
        });
        var current = selected();
        if (current && current.closest("#queue-cards") && !freshBox.querySelector("#card-" + selectedId)) {
          // The card the analyst was on is not in the list the server sends now: it left
          // while this page was not listening (decided, withdrawn, expired) or, in a long or
          // filtered queue, no longer stands among the cards shown. Said in its place.
          if (current.classList.contains("filtered-out")) {
            // The analyst's own filter hid it: nothing happened to the proposal.
            leaveInPlace(current, "The card you were on does not match your filter; change or clear the filter to see it again", true);
          } else {
            leaveInPlace(current, "The card you were on is no longer in this list: it was decided, withdrawn or expired while the connection was down, or moved out of the cards shown. Its page says which", true);
          }
        }
        old.querySelectorAll("#queue-cards > .card-left").forEach(function (notice) {
          // The notice of a card that left stays where it was, before the same next card.
          var after = notice.nextElementSibling;
          while (after && !after.classList.contains("card")) after = after.nextElementSibling;
          var anchor = after ? freshBox.querySelector("#card-" + after.dataset.id) : null;
          var focused = document.activeElement === notice;
          freshBox.insertBefore(notice, anchor);
          if (focused) notice.focus({ preventScroll: true });
        });
        if (countersAt >= started) {
          fresh.querySelector("#queue-counters").replaceWith(document.getElementById("queue-counters"));
        }
        old.replaceWith(fresh);
        htmx.process(fresh);
        replay.forEach(function (text) { htmx.swap(document.body, transformLive(text, freshAt), { swapStyle: "none" }); });
        refreshQueue();
        scheduleFilteredRefresh(); // the filter may have changed with this fetch
      })
      .catch(function () { resync = null; /* the socket's reconnect brings us back here */ });
  }

  // A filtered queue is re-read from the server every data-refresh seconds (the server's
  // period, on #queue): the live updates carry the whole queue's first page only, so a
  // matching card below it arrives this way. The unfiltered queue has no data-refresh: its
  // live updates are the whole of it.
  var filteredTimer = null;
  function scheduleFilteredRefresh() {
    clearTimeout(filteredTimer);
    var queue = document.getElementById("queue");
    var seconds = queue ? Number(queue.dataset.refresh) : 0;
    if (!seconds) return;
    filteredTimer = setTimeout(function () {
      if (body.dataset.signedOut) return; // the session ended: nothing more to read
      var typing = document.activeElement && document.activeElement.classList.contains("reason");
      if (!(typing && document.activeElement.value)) resyncQueue(); // else at the next tick
      scheduleFilteredRefresh();
    }, seconds * 1000);
  }

  function refetchStop() {
    fetch(body.dataset.stopBannerUrl, { credentials: "same-origin" })
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
    if (target.id === "stop-banner" || target.id === "demotion-notices") { scheduleHeldRefresh(); return; }
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
  // The same observer says since when a card has been on screen (half of it at least), for
  // STEADY_MS: a key acts only on a card the analyst could have been reading.
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      var id = entry.target.dataset.id;
      var seen = entry.isIntersecting && entry.intersectionRatio >= 0.5;
      if (seen && !shownAt[id]) shownAt[id] = Date.now();
      if (!visibleSince) return;
      if (!seen) visibleSince.delete(entry.target);
      else if (!visibleSince.has(entry.target)) visibleSince.set(entry.target, Date.now());
    });
  }, { threshold: [0, 0.5, 1] }) : null;

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

  function isTextField(el) {
    if (!el || el.nodeType !== 1) return false;
    var tag = el.tagName.toLowerCase();
    // A checkbox (a card's pick for several at once) takes no typing: keys still work there.
    if (tag === "input") return ["checkbox", "radio", "button", "submit"].indexOf(el.type) < 0;
    return tag === "textarea" || tag === "select" || el.isContentEditable;
  }

  function pageTop(el) { return Math.round(el.getBoundingClientRect().top + window.scrollY); }

  // Keep track of the card a key would act on: when it became that card, and where it is.
  // A different element (another card selected, or a newer copy of the same card) or a new
  // position (cards arriving, leaving or growing above it) starts the STEADY_MS clock again.
  function noteSteadiness() {
    var el = decideTarget();
    var now = Date.now();
    if (!el) { watch = { el: null, id: null, top: 0, since: now, why: "selected" }; return; }
    var top = pageTop(el);
    if (watch.el !== el) {
      var why = watch.id && watch.id === el.dataset.id ? "changed" : "selected";
      watch = { el: el, id: el.dataset.id, top: top, since: now, why: why };
    } else if (watch.top !== top) {
      watch.top = top;
      watch.since = now;
      watch.why = "moved";
    }
  }

  // Why a key must not act on `el` now, in the analyst's words; "" when it may.
  function unsteady(el) {
    noteSteadiness();
    var now = Date.now();
    var rect = el.getBoundingClientRect();
    var onScreen = rect.bottom > 0 && rect.top < window.innerHeight && rect.height > 0;
    var shown = visibleSince ? visibleSince.get(el) : now - STEADY_MS;
    if (!onScreen) return "the selected card is not on screen: scroll to it or select another";
    if (watch.why === "moved" && now - watch.since < STEADY_MS) {
      return "the cards moved just now; check the selected card";
    }
    if (watch.why === "changed" && now - watch.since < STEADY_MS) {
      return "this card was updated just now; check it";
    }
    if (now - watch.since < STEADY_MS) return "this card was selected a moment ago; look at it";
    if (!shown || now - shown < STEADY_MS) return "this card came on screen a moment ago; look at it";
    return "";
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    if (event.isComposing) return;
    var field = isTextField(event.target) ? event.target : null;
    if (!field && isTextField(document.activeElement)) field = document.activeElement;
    if (field) {
      // Typing is never a shortcut.
      if (event.key === "Escape") {
        field.blur();
        var owner = field.closest(".card");
        if (owner) owner.focus();
      } else if (event.key === "Enter" && field.classList.contains("reason")) {
        // Enter in the note/reason box never decides. The same box holds an approval's note
        // and a rejection's reason, so Enter could only guess which the analyst meant (it
        // used to reject "ok to approve"). A tired analyst's Enter is a reflex; a decision
        // must be a labelled button, or a or r outside the box, after reading the card.
        event.preventDefault();
        showFlash("Enter does not decide: press Approve or Reject (Tab moves to them), or Esc and then a or r.", "info");
      }
      return;
    }
    if (keptTyping(event)) return;
    var key = event.key;
    if (key === "j") { move(1); event.preventDefault(); return; }
    if (key === "k") { move(-1); event.preventDefault(); return; }
    if (key === "o" && selected()) {
      var details = selected().querySelector("a.details");
      if (details) window.location = details.href;
      return;
    }
    if (key === "u") { event.preventDefault(); if (!event.repeat) undoLatest(); return; }
    if (key === "U") { event.preventDefault(); if (!event.repeat) undoAll(); return; }
    if (key !== "a" && key !== "r") return;
    event.preventDefault();
    if (body.dataset.canDecide !== "true" || event.repeat) return; // a held key decides nothing
    var box = document.activeElement;
    var boxCard = box && box.classList && box.classList.contains("pick") ? box.closest(".card") : null;
    if (boxCard && boxCard.dataset.id !== selectedId) {
      // The focus is on another card's checkbox: the key would act on a card the analyst is
      // not on. Nothing is decided; the card with the box is the one to select.
      showFlash((key === "a" ? "Not approved" : "Not rejected") + ": the box you are on belongs " +
        "to another card than the selected one. Select that card (a click, or j and k) first.", "info");
      return;
    }
    var target = decideTarget();
    if (!target) {
      if (!document.querySelector(".card-left")) showFlash("Select a card first: j, k or a click.", "info");
      return;
    }
    if (target.classList.contains("mine")) {
      showFlash("You already approved this one; another analyst must give the next approval.", false);
      return;
    }
    var why = unsteady(target);
    if (why) {
      showFlash((key === "a" ? "Not approved: " : "Not rejected: ") + why + ", then press " + key + " again.", "info");
      return;
    }
    // r sends the rejection with the reason in the box; without one the server refuses and
    // the cursor goes to the box (see htmx:afterRequest).
    if (key === "a" && target.dataset.needsSenior && body.dataset.senior !== "1") {
      // The button is not shown to this analyst (console.css): the server would refuse it.
      showFlash("Not approved: the next approval must come from a senior analyst.", "info");
      return;
    }
    var button = target.querySelector(key === "a" ? "button.approve" : "button.reject");
    if (button && !button.disabled) { button.click(); return; }
    // Say why nothing happens: the disabled button's title gives the reason when it has one.
    var verb = key === "a" ? "approved" : "rejected";
    showFlash("Not " + verb + ": " + ((button && button.title) ||
      "this card cannot be " + verb + " by you here; its page says why") + ".", "info");
  });

  // --- a card that moved under the pointer ----------------------------------------------------
  // The same rule for the mouse: a card that took its place on the page less than STEADY_MS
  // ago (the card above it decided and gone, a new one arrived above it, or it arrived where
  // other cards were) does not take a click on Approve or Reject. Otherwise the second click of
  // a double-click lands on the card that moved up into the first one's place, and approves
  // what the analyst never read. Each card's place is noted whenever the list changes.
  // By proposal id, not by element: a newer copy of a card in the same place has not moved,
  // and a queue re-read after a reconnect is the same cards, some of them elsewhere.
  var placedAt = typeof Map === "function" ? new Map() : null; // proposal id -> {top, since}
  var placesNoted = false;
  function notePlaces() {
    if (!placedAt) return;
    var now = Date.now();
    var list = cards();
    var known = list.some(function (card) { return placedAt.has(card.dataset.id); });
    var present = {};
    list.forEach(function (card) {
      var id = card.dataset.id;
      present[id] = true;
      var top = pageTop(card);
      var seen = placedAt.get(id);
      if (seen && seen.top === top) return;
      // The cards of the first render, and one arriving in an empty queue, displace nothing.
      var displaced = placesNoted && (seen || known);
      placedAt.set(id, { top: top, since: displaced ? now : 0 });
    });
    placedAt.forEach(function (_, id) { if (!present[id]) placedAt.delete(id); });
    placesNoted = true;
  }
  // Anything on the page may move the cards (a card leaving or arriving, a group folding, a
  // message appearing above them): every change is a moment to note where they are.
  if (document.getElementById("queue-cards") && "MutationObserver" in window) {
    new MutationObserver(notePlaces).observe(body, {
      childList: true, subtree: true, attributes: true,
      attributeFilter: ["class", "hidden", "style", "open"],
    });
  }
  document.addEventListener("click", function (event) {
    // A click with no pointer (a key's, Enter or Space on a focused button) acts on the button
    // that has the focus, wherever it went: only a pointer can land on a card that moved.
    if (event.detail === 0) return;
    var button = event.target.closest && event.target.closest("button.approve, button.reject");
    var card = button && button.closest("#queue-cards > .card");
    if (!card || !placedAt) return;
    notePlaces();
    var seen = placedAt.get(card.dataset.id);
    if (!seen || Date.now() - seen.since >= STEADY_MS) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    showFlash((button.classList.contains("approve") ? "Not approved" : "Not rejected") +
      ": the cards moved under the pointer just now; check the card, then click again.", "info");
  }, true);
  window.addEventListener("resize", notePlaces);

  // Tabbing into a card selects it, so that the card a key acts on is the one the focus is in.
  document.addEventListener("focusin", function (event) {
    // A card's checkbox picks it for a decision on several cards; focusing it selects nothing
    // (selecting scrolls the card into view, which would move the box between press and release).
    if (event.target.classList && event.target.classList.contains("pick")) return;
    var card = event.target.closest && event.target.closest("#queue-cards > .card");
    if (card && card.dataset.id !== selectedId) select(card, true);
  });
  window.addEventListener("resize", noteSteadiness);

  // A demotion notice stays until the analyst has read it and dismisses it.
  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest && event.target.closest(".demotion-notice .dismiss");
    if (dismiss) dismiss.closest(".demotion-notice").remove();
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest("#queue-cards > .card");
    // A click on a button or field keeps its focus: moving it to the card would make htmx
    // forget which submit button was pressed.
    var control = event.target.closest("button, a, input, summary");
    if (card && (card.dataset.id !== selectedId || announced !== selectedId)) select(card, !!control);
    // After this click has done what it was for (a button's submit included).
    if (card && document.querySelector(".card-left")) setTimeout(clearNotices, 0);
  });

  // --- decisions ------------------------------------------------------------------------------
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.decide");
    if (!form) return;
    var holder = form.closest("[data-id]");
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    var verdict = submitter ? submitter.value : event.detail.parameters.verdict;
    if (verdict) event.detail.parameters.verdict = verdict;
    // Whether a rejection's reason is enough is the server's rule: it answers with its message
    // and names the field (see htmx:afterRequest).
    if (holder) {
      deciding[holder.dataset.id] = true;
      event.detail.parameters.seconds_on_card = secondsOnCard(holder.dataset.id);
    }
  });

  // What the server answered a decision or an undo with: its ANSWERED event (HX-Trigger,
  // approvals/views.py), fired on the form before htmx:afterRequest.
  var answers = typeof WeakMap === "function" ? new WeakMap() : null;
  document.addEventListener("console:answered", function (event) {
    var form = event.target.closest && event.target.closest("form");
    if (form && answers) answers.set(form, event.detail || {});
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    // An undo was answered, done or refused: its button has nothing more to do.
    var toast = event.detail.elt.closest && event.detail.elt.closest(".undo-toast");
    if (toast) {
      if (event.detail.successful) toast.remove();
      else toast.classList.remove("sending");
      return;
    }
    var form = event.detail.elt.closest && event.detail.elt.closest("form.decide");
    if (!form) return;
    var holder = form.closest("[data-id]");
    var id = holder ? holder.dataset.id : null;
    if (id) delete deciding[id];
    var answer = (answers && answers.get(form)) || {};
    if (answers) answers.delete(form);
    var reason = form.querySelector("input.reason");
    if (answer.field === "reason" && reason && reason.isConnected) {
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
    } else if (reason) {
      reason.removeAttribute("aria-invalid");
    }
    if (!id || !event.detail.successful) return;
    var wasSelected = id === selectedId;
    if (answer.outcome === "decided") {
      // Usually the websocket already removed it; without a socket this keeps the page true
      // (the cards that move up come with the server's next update, or the next resync).
      gone[id] = Math.max(gone[id] || 0, Number(answer.at) || 1);
      if (holder.isConnected) holder.remove();
      refreshQueue();
      if (wasSelected) advanceAfterDecision();
    } else if (answer.outcome === "partial" && wasSelected) {
      // Approved, and now waiting for someone else (a senior): the card moves below the ones
      // this analyst can act on, and the next card takes its place, as after a decision. (The
      // live update may already have replaced the card the form was in.)
      var waiting = cardById(id);
      if (waiting && (waiting.dataset.deciders || "").split(" ").indexOf(me) < 0) {
        waiting.dataset.deciders = (waiting.dataset.deciders || "") + me + " ";
      }
      refreshQueue(); // see mineIds there
    } else if (wasSelected && !holder.isConnected) {
      selectedId = null; // decided by someone else while this request was on its way
    }
  });

  // --- a request that failed -----------------------------------------------------------------
  // A decision (or any console form) that did not reach the server, or that the server
  // refused before deciding, says so in the flash region. The card and the note typed in it
  // stay as they were, so that the analyst can send it again.
  function notDone(elt) {
    var form = elt && elt.closest && elt.closest("form");
    if (form && (form.classList.contains("decide") || form.classList.contains("bulk") ||
        form.classList.contains("group-decide"))) return { what: "Not decided", again: "decide again" };
    if (form && form.closest(".undo-toast")) return { what: "Not undone", again: "undo again" };
    return { what: "Nothing was done", again: "try again" };
  }
  // The server's own words, when it sent them: the console's message fragment (approvals/
  // views/common.py, refused and csrf_failure) or a problem's detail.
  function serverMessage(xhr) {
    var type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    if (type.indexOf("json") >= 0) {
      try {
        var problem = JSON.parse(xhr.responseText);
        return (problem && (problem.detail || problem.title)) || "";
      } catch (e) { return ""; }
    }
    if (type.indexOf("text/html") !== 0) return "";
    var template = document.createElement("template");
    template.innerHTML = xhr.responseText || "";
    var first = template.content.firstElementChild;
    return first && first.matches("p.flash") ? first.textContent.trim() : "";
  }
  document.addEventListener("htmx:sendError", function (event) {
    showFlash(notDone(event.detail.elt).what + ": the console cannot reach the server; nothing " +
      "was changed. Try again when it is back.", false);
  });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var failed = notDone(event.detail.elt);
    var text = serverMessage(xhr);
    if (!text) {
      text = failed.what + ": the server answered " + xhr.status +
        (xhr.statusText ? " " + xhr.statusText : "") + ". Reload the page to see where things " +
        "stand, then " + failed.again + ".";
    }
    showFlash(text, false);
  });

  // A changed filter: the address says it (a reload keeps it) and the server renders the
  // page for it, matching cards beyond the first page included; meanwhile the cards already
  // here are filtered at once.
  var filterTimer = null;
  function filterChanged() {
    var form = document.getElementById("queue-filter");
    var params = new URLSearchParams(new FormData(form));
    Array.from(params.keys()).forEach(function (key) { if (!params.get(key)) params.delete(key); });
    var search = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
    refreshQueue();
    clearTimeout(filterTimer);
    filterTimer = setTimeout(refetchFiltered, 300);
  }
  function refetchFiltered() {
    if (resync) { filterTimer = setTimeout(refetchFiltered, 200); return; } // one at a time
    resyncQueue();
  }
  document.addEventListener("input", function (event) {
    if (event.target.form && event.target.form.id === "queue-filter") filterChanged();
  });
  document.addEventListener("submit", function (event) {
    if (event.target.id !== "queue-filter") return;
    event.preventDefault();
    filterChanged();
  });

  // --- several cards at once ----------------------------------------------------------------
  // The cards' checkboxes belong to #bulk-form; the server decides each proposal on its own
  // and answers with what it did and what it refused (approvals/services/bulk.py).
  function picks() { return Array.prototype.slice.call(document.querySelectorAll("input.pick[form=bulk-form]")); }
  function countPicks() {
    var counter = document.querySelector("#bulk-form .bulk-count strong");
    if (counter) counter.textContent = String(picks().filter(function (el) { return el.checked; }).length);
  }
  document.addEventListener("change", function (event) {
    if (!event.target.classList || !event.target.classList.contains("pick")) return;
    // A group's card stands for every proposal of the group: picking it picks them all.
    var card = event.target.closest(".card");
    if (card && card.dataset.group) {
      var members = sameGroup(card.dataset.group);
      members.forEach(function (other) {
        var pick = other.querySelector("input.pick");
        if (pick) pick.checked = event.target.checked;
      });
      // One tick, several proposals: said at once, so that nobody decides more than they meant.
      if (members.length > 1) {
        showFlash((event.target.checked ? "Selected" : "Unselected") + " all " + members.length +
          " proposals of this card's group (the same action and target): a decision on the " +
          "selection decides each of them.", "info");
      }
    }
    countPicks();
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#bulk-form button[type=button]");
    if (!button) return;
    var all = button.classList.contains("bulk-all");
    picks().forEach(function (el) {
      var card = el.closest(".card");
      // "All shown": what the analyst can see, not cards hidden by a filter or in a group.
      if (!all) el.checked = false;
      else if (card && card.offsetParent !== null) el.checked = true;
    });
    if (all) {
      // A group's card that is shown brings the rest of its group.
      picks().forEach(function (el) {
        var card = el.closest(".card");
        if (!card || !card.classList.contains("grouped")) return;
        var lead = cardById(groupLead[card.dataset.group]);
        var leadPick = lead && lead.querySelector("input.pick");
        if (leadPick && leadPick.checked) el.checked = true;
      });
    }
    countPicks();
  });
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.bulk, form.group-decide");
    if (!form) return;
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    if (submitter && submitter.name === "verdict") event.detail.parameters.verdict = submitter.value;
    // The analyst's own decisions: their cards leaving is no news (see transformLive).
    bulkIds(form).forEach(function (id) { deciding[id] = true; });
  });
  function bulkIds(form) {
    // A group's form names its group, not its proposals (the server decides those the page
    // showed): what this analyst is deciding is that group's cards on the page.
    if (!form.classList.contains("bulk")) {
      var card = form.closest(".card");
      return card ? sameGroup(card.dataset.group).map(function (c) { return c.dataset.id; }) : [];
    }
    return picks().filter(function (el) { return el.checked; }).map(function (el) { return el.value; });
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("form.bulk, form.group-decide");
    if (!form) return;
    var answer = (answers && answers.get(form)) || {};
    if (answers) answers.delete(form);
    Object.keys(deciding).forEach(function (id) {
      if ((answer.done || []).indexOf(id) < 0) delete deciding[id];
    });
    if (!event.detail.successful) return;
    var reason = form.querySelector("input.reason");
    if (answer.field === "reason" && reason) { reason.setAttribute("aria-invalid", "true"); reason.focus(); return; }
    if (reason) reason.removeAttribute("aria-invalid");
    // What was decided leaves the selection (and, once the live update comes, the queue);
    // what was refused stays selected, beside its reason in the summary.
    // As after a single decision: what this analyst decided leaves now (a proposal still
    // waiting for another approver stays), and the next card takes the selected one's place.
    var wasSelected = false;
    (answer.done || []).forEach(function (id) {
      delete deciding[id];
      var card = cardById(id);
      var pick = card && card.querySelector("input.pick");
      if (pick) pick.checked = false;
      if ((answer.partial || []).indexOf(id) >= 0) return;
      gone[id] = Math.max(gone[id] || 0, Number(answer.at) || 1);
      if (id === selectedId) { wasSelected = true; selectedId = null; }
      if (card && card.closest("#queue-cards")) card.remove();
    });
    refreshQueue();
    if (wasSelected) advanceAfterDecision();
    if (answer.outcome === "bulk" && reason && !(answer.refused || []).length) reason.value = "";
    countPicks();
  });

  // --- undo -----------------------------------------------------------------------------------
  // Each approval still in its undo window has a toast with an Undo button and a countdown.
  // The server gives the seconds left when it answered; the page counts down from its arrival,
  // a little early, so that a click at "1" still reaches the server in time.
  var UNDO_MARGIN_MS = 300;
  var undoTimer = null;

  function startUndoToasts() {
    keepClearSoon();
    var tray = document.getElementById("undo-tray");
    document.querySelectorAll("#flash .undo-toast").forEach(function (toast) {
      if (!tray) return;
      // The tab that approved hears of it twice: in this answer and over its socket (as every
      // console of the analyst does). A copy already in the tray came first and stays.
      if (tray.querySelector("#" + toast.id)) { toast.remove(); return; }
      tray.insertBefore(toast, tray.firstChild); // the newest first, for u
      // htmx wires a swapped form a moment after the swap; a u pressed in that moment would
      // post the form as a plain page (a reload that forgets the press). Wired now.
      htmx.process(toast);
    });
    // Those that came over the socket (see liveUndoToasts): wired now, for the same reason.
    document.querySelectorAll("#undo-tray .undo-toast:not([data-deadline])").forEach(function (toast) {
      htmx.process(toast);
    });
    var now = Date.now();
    document.querySelectorAll(".undo-toast:not([data-deadline])").forEach(function (toast) {
      var seconds = parseFloat(toast.dataset.seconds) || 0;
      toast.dataset.deadline = String(now + seconds * 1000 - UNDO_MARGIN_MS);
    });
    tickUndo();
  }

  function tickUndo() {
    clearTimeout(undoTimer);
    var now = Date.now();
    var live = 0;
    document.querySelectorAll(".undo-toast[data-deadline]").forEach(function (toast) {
      if (toast.classList.contains("closed")) return;
      var left = Number(toast.dataset.deadline) - now;
      var counter = toast.querySelector(".undo-countdown");
      if (left > 0) {
        live += 1;
        if (counter) counter.textContent = String(Math.ceil(left / 1000));
        return;
      }
      toast.classList.add("closed");
      var what = toast.querySelector(".undo-what");
      toast.textContent = (what ? what.textContent.replace(/: (runs in|held) .*$/, "") : "Approved") + ": the undo window is over.";
      setTimeout(function () { toast.remove(); tickUndo(); }, 4000);
    });
    foldUndoToasts();
    if (live) undoTimer = setTimeout(tickUndo, 200);
  }

  // A decision on many cards gives many toasts: stacked, they stood over the cards' buttons.
  // The newest UNDO_SHOWN show (u takes the newest); the others are counted below them.
  var UNDO_SHOWN = 3;
  function foldUndoToasts() {
    var tray = document.getElementById("undo-tray");
    if (!tray) return;
    var open = Array.prototype.slice.call(tray.querySelectorAll(".undo-toast:not(.closed)"));
    open.forEach(function (toast, index) { toast.classList.toggle("folded", index >= UNDO_SHOWN); });
    var more = document.getElementById("undo-more");
    var folded = open.length - UNDO_SHOWN;
    if (folded <= 0) { if (more) more.remove(); return; }
    if (!more) {
      more = document.createElement("p");
      more.id = "undo-more";
      more.className = "undo-more";
    }
    if (tray.lastElementChild !== more) tray.appendChild(more); // below the toasts
    more.textContent = "and " + folded + " more approval" + (folded === 1 ? "" : "s") +
      " in the undo window: Shift+U undoes them all.";
  }

  // One press of u undoes one approval: a second press within UNDO_AGAIN_MS of the first (a
  // double tap, a bounce) is taken as the same press, so that it cannot undo the approval
  // before it unseen; a deliberate one after that undoes the next, and each says which.
  var UNDO_AGAIN_MS = 1000;
  var lastUndo = { at: 0, what: "" };
  var heldNote = null; // {text, until}: for the first press's answer only, and not for long
  function keepHeldNote() {
    var area = document.getElementById("flash");
    var note = heldNote;
    heldNote = null;
    if (!note || !area || Date.now() > note.until) return;
    addFlash(note.text);
  }
  // A first approval of a two-person action is no approval in its window: nothing runs before
  // the second, and a rejection takes it back.
  var NOTHING_TO_UNDO = "Nothing to undo: no approval of yours is in its undo window (a first " +
    "approval that waits for a second approver starts nothing and has no undo; another " +
    "analyst's rejection takes it back).";
  function undoLatest() {
    var button = document.querySelector("#undo-tray .undo-toast:not(.closed):not(.sending) button.undo");
    var now = Date.now();
    if (button && now - lastUndo.at < UNDO_AGAIN_MS) {
      var note = "One undo per press: the undo of " + lastUndo.what + " was just sent. To undo " +
        undoWhat(button) + " too, press u again.";
      if (document.querySelector("#undo-tray .undo-toast.sending")) {
        showFlash(note, "info");
        // The first press's answer lands in the flash after this: it keeps this note under it.
        heldNote = { text: note, until: now + UNDO_AGAIN_MS * 10 };
      } else {
        // The first press's answer is there already ("Approval undone: …"): the note goes
        // under it, so that both are read.
        heldNote = { text: note, until: now + UNDO_AGAIN_MS * 10 };
        keepHeldNote();
      }
      return;
    }
    if (!button) {
      showFlash(NOTHING_TO_UNDO, "info");
      return;
    }
    lastUndo = { at: now, what: undoWhat(button) };
    button.closest(".undo-toast").classList.add("sending"); // not offered again while on its way
    button.click();
  }
  // Shift+U, or a decision on several cards' "Undo all": every approval of this analyst still
  // in its window, at once (one press of u undoes one, so a window of a few seconds holds too
  // few presses for a bulk approval made by mistake).
  function undoAll(ids) {
    var buttons = Array.prototype.slice.call(
      document.querySelectorAll("#undo-tray .undo-toast:not(.closed):not(.sending) button.undo")
    ).filter(function (button) {
      return !ids || ids.indexOf(button.closest(".undo-toast").id.replace(/^undo-/, "")) >= 0;
    });
    if (!buttons.length) {
      showFlash(NOTHING_TO_UNDO, "info");
      return;
    }
    lastUndo = { at: Date.now(), what: buttons.length + " approvals" };
    // Sent here rather than by clicking each toast: the flash would end on the last undo's
    // words alone, and a toast the socket removes first never reports its answer. One line
    // says what became of them all once every answer is in.
    var forms = buttons.map(function (button) { return button.closest("form"); });
    forms.forEach(function (form) { form.closest(".undo-toast").classList.add("sending"); });
    Promise.all(forms.map(undoSent)).then(function (undone) {
      var done = 0;
      undone.forEach(function (ok, i) {
        var toast = forms[i].closest(".undo-toast");
        if (ok) { done += 1; toast.remove(); } else { toast.classList.remove("sending"); }
      });
      var total = undone.length;
      showFlash(done === total
        ? "Undone all " + total + " approvals: each is pending again; nothing ran."
        : "Undone " + done + " of " + total + " approvals: those are pending again and nothing " +
          "of them ran; " + (total - done) + " could not be undone (their window was over, or " +
          "they had started).", done === total ? true : "info");
      startUndoToasts();
    });
  }
  // One undo's request, as its toast's form would send it: whether the server undid it (the
  // outcome of its ANSWERED event, approvals/views/common.py).
  function undoSent(form) {
    var headers = { "HX-Request": "true" };
    try {
      // The page's CSRF token, as htmx sends it (hx-headers on the body): a toast that came
      // over the socket was rendered without one.
      var page = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      if (page["X-CSRFToken"]) headers["X-CSRFToken"] = page["X-CSRFToken"];
    } catch (e) { /* a form's own token, if any, still goes in its body */ }
    return fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: headers,
      credentials: "same-origin",
    }).then(function (response) {
      var said = {};
      try { said = JSON.parse(response.headers.get("HX-Trigger") || "{}")["console:answered"] || {}; } catch (e) { said = {}; }
      return response.ok && said.outcome === "undone";
    }, function () { return false; });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.undo-all");
    if (!button) return;
    event.preventDefault();
    undoAll((button.dataset.proposals || "").split(" ").filter(Boolean));
  });
  function undoWhat(button) {
    var what = button.closest(".undo-toast").querySelector(".undo-what");
    var text = what ? what.textContent.replace(/: (runs in|held) .*$/, "").replace(/^Approved\s+/, "") : "";
    return text ? "the approval of “" + text.trim() + "”" : "the approval before";
  }

  // --- live status ----------------------------------------------------------------------------
  function setLive(text, ok) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.className = "live-status " + (ok ? "ok" : "down");
  }

  // --- heartbeat ------------------------------------------------------------------------------
  // The server says something at least every data-heartbeat seconds (an empty beat when there is
  // nothing else). A socket that has been silent for three beats is dead without knowing it (a
  // laptop that slept, a proxy or NAT that dropped the connection): the badge says so and the
  // page connects again, which re-reads the queue (htmx:wsOpen).
  var BEAT_MS = (parseFloat(body.dataset.heartbeat) || 15) * 1000;
  var lastWord = Date.now();
  var currentSocket = null; // the WebSocket behind `socket`
  var replacing = false; // a new socket is on its way: no second one until it has opened
  var silence = 0; // seconds without a word before that replacement, to say once it is open
  function checkHeartbeat() {
    if (!socket || replacing || Date.now() - lastWord <= 3 * BEAT_MS) return;
    var silent = Math.round((Date.now() - lastWord) / 1000);
    setLive("no word from the server for " + silent + " s: reconnecting…", false);
    lastWord = Date.now(); // one attempt per silence
    silence = silent;
    // The silent socket's close, whenever it comes, is old news: no retry of the extension's
    // and no "offline" from it, since a new socket is on its way.
    if (currentSocket) currentSocket.onclose = null;
    replacing = true;
    socket.reconnect();
  }
  if (body.dataset.heartbeat) setInterval(checkHeartbeat, Math.min(5000, BEAT_MS));

  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    currentSocket = event.detail.event && event.detail.event.target;
    replacing = false;
    if (silence) {
      // The badge's "reconnecting…" lasts as long as the new socket takes: this stays longer,
      // under an error already shown rather than over it.
      var said = "No word from the server for " + silence + " s: connected again" +
        (document.getElementById("queue-cards") ? ", and the queue is re-read, so nothing " +
          "sent meanwhile is missed." : ".");
      var area = document.getElementById("flash");
      if (area && area.querySelector(".flash.error")) addFlash(said);
      else showFlash(said, "info");
      silence = 0;
    }
    lastWord = Date.now();
    opened += 1;
    setLive("live", true);
    if (opened > 1) {
      // Whatever was broadcast while the socket was down is fetched now.
      resyncQueue();
      refetchStop();
      scheduleHeldRefresh();
    }
  });
  document.addEventListener("htmx:wsClose", function (event) {
    socket = null;
    var code = event.detail.event && event.detail.event.code;
    if (code === SIGNED_OUT) signedOut();
    else if (code === NOT_ALLOWED) setLive("no console role: reload the page", false);
    else if (LIVE_CLOSE_CODES.indexOf(code) >= 0) setLive("reconnecting…", false);
    else setLive("offline: reload the page", false);
  });
  // The server closed the socket because this page's session ended (signed out here or in
  // another tab, expired, or the account was deactivated): nothing live comes any more, and
  // the badge says so with the way back in.
  function signedOut() {
    body.dataset.signedOut = "1";
    var el = document.getElementById("live-status");
    if (!el) return;
    el.className = "live-status down";
    el.textContent = "signed out · ";
    var link = document.createElement("a");
    link.href = (body.dataset.loginUrl || "/accounts/login/") + "?next=" +
      encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = "sign in";
    el.appendChild(link);
  }
  document.addEventListener("htmx:wsAfterMessage", function () {
    refreshQueue();
    // An approval given in another tab (or through the API) brings its undo toast here too.
    if (document.querySelector("#undo-tray .undo-toast:not([data-deadline])")) startUndoToasts();
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    if (!event.detail.successful && elt && elt.closest && elt.closest(".undo-toast")) heldNote = null;
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "flash") {
      startUndoToasts();
      var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
      if (elt && elt.closest && elt.closest(".undo-toast")) keepHeldNote();
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    refreshQueue();
    scheduleFlashClear();
    startUndoToasts();
  });
  document.addEventListener("DOMContentLoaded", function () {
    refreshQueue(); // folds duplicate groups and applies the filter before one is picked
    var first = shownCards()[0];
    if (first) mark(first);
    var panel = document.querySelector(".decide-panel");
    if (panel) observe(panel);
    refreshQueue();
    noteSteadiness();
    scheduleFlashClear();
    scheduleFilteredRefresh();
    startUndoToasts(); // the page's own: approvals still in their window when it was rendered
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
