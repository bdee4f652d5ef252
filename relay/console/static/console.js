// relay console: reads and acts through the admin JSON API
// (docs/reference.md, Admin listener). No framework, no build step.
"use strict";
(() => {
  const $ = (sel) => document.querySelector(sel);
  const page = document.body.dataset.page;

  // el builds an element; children are nodes or text (never parsed as HTML).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) {
      if (k != null) e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  class APIError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  // api calls the admin API with the session cookie; a non-2xx answer
  // throws its {"error"} text, a 401 goes back to the login form.
  let serverDate = NaN; // the server's clock at its latest answer (ms)
  async function api(path, opts = {}) {
    const res = await fetch(path, { ...opts, credentials: "same-origin", headers: { Accept: "application/json", ...(opts.headers || {}) } });
    serverDate = Date.parse(res.headers.get("Date") || "") || serverDate;
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    if (res.status === 401 && document.body.dataset.page !== "login") {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
    if (!res.ok) throw new APIError(res.status, (body && body.error) || `${res.status} ${res.statusText}`);
    return body;
  }

  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  // when shows an RFC 3339 time in the browser's zone, the UTC on hover.
  function when(iso) {
    if (!iso || iso.startsWith("0001-")) return el("span", { text: "—" });
    const d = new Date(iso);
    if (isNaN(d)) return el("span", { text: iso });
    const utc = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    return el("time", { datetime: d.toISOString(), title: utc, text: dateFmt.format(d) });
  }
  const num = (n) => Number(n || 0).toLocaleString();
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    n = Number(n || 0);
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  const badge = (text, kind) => el("span", { class: `badge ${kind || text}`, text });
  const plural = (n, word) => `${num(n)} ${word}${n === 1 ? "" : "s"}`;

  function showError(msg) { const e = $("#error"); if (e) { e.textContent = msg; e.hidden = false; } }
  function clearError() { const e = $("#error"); if (e) { e.textContent = ""; e.hidden = true; } }
  function setStatus(sel, ...kids) { const s = $(sel); if (s) s.replaceChildren(...kids); }
  const params = new URLSearchParams(location.search);
  // keepParams writes the filter into the address, so a reload or a shared
  // link shows the same view.
  function keepParams(values) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) if (v) q.set(k, v);
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  }
  // every runs fn now and then every ms milliseconds after it settles.
  function every(ms, fn) {
    const run = async () => { try { await fn(); } finally { setTimeout(run, ms); } };
    run();
  }
  // reconcile puts rows (in order) into tbody, moving only what changed, so
  // that focus and selection survive a refresh.
  function reconcile(tbody, rows) {
    rows.forEach((row, i) => { if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null); });
    while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
  }
  // confirmDialog asks in the page's <dialog>; resolves true for "ok".
  function confirmDialog(text, okLabel) {
    const d = $("#confirm");
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel;
    d.returnValue = "";
    return new Promise((resolve) => {
      d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
      d.showModal();
      $("#confirm-cancel").focus();
    });
  }
  async function sinkNames() {
    const r = await api("/api/v1/rules");
    return r.sinks;
  }
  // labelCells gives every cell of the .cards tables its column's name,
  // which the narrow layout shows in front of the value.
  function labelCells() {
    for (const table of document.querySelectorAll("table.cards")) {
      const names = [...table.querySelectorAll("thead th")].map((th) => th.dataset.label || th.textContent.trim());
      const label = () => {
        for (const tr of table.tBodies[0].rows) [...tr.cells].forEach((c, i) => { if (!c.dataset.label) c.dataset.label = names[i] || ""; });
      };
      new MutationObserver(label).observe(table.tBodies[0], { childList: true });
      label();
    }
  }
  // yaml shows the config as the file would spell it.
  function yaml(v, indent = "") {
    const scalar = (x) => {
      if (x === null || x === undefined) return "null";
      if (typeof x !== "string") return String(x);
      return x === "" || /^[\s\-?:,\[\]{}#&*!|>'"%@`]|[:#]\s|\s$|\n|^(true|false|null|yes|no|~|[-+.\d].*)$/i.test(x) ? JSON.stringify(x) : x;
    };
    const block = (x) => x !== null && typeof x === "object" && Object.keys(x).length > 0;
    if (Array.isArray(v)) {
      return v.map((x) => block(x)
        ? `${indent}- ${yaml(x, indent + "  ").slice(indent.length + 2)}`
        : `${indent}- ${scalar(x)}\n`).join("");
    }
    const top = ["server", "storage", "sources", "sinks", "retry", "rules", "expectations"];
    const keys = Object.keys(v).sort((a, b) => (top.indexOf(a) + 1 || 99) - (top.indexOf(b) + 1 || 99) || a.localeCompare(b));
    return keys.map((k) => block(v[k])
      ? `${indent}${k}:\n${yaml(v[k], indent + "  ")}`
      : `${indent}${k}: ${Array.isArray(v[k]) ? "[]" : (v[k] && typeof v[k] === "object" ? "{}" : scalar(v[k]))}\n`).join("");
  }
  const trailBadges = (sinks) => Object.keys(sinks || {}).sort().map((s) => badge(`${s}: ${sinks[s].status}`, sinks[s].status));

  // ---- overview ----
  function overview() {
    let prev = null;
    every(2000, async () => {
      let ov;
      try { ov = await api("/api/v1/overview"); clearError(); } catch (e) { showError(e.message); return; }
      let rate = "—";
      if (prev) {
        const dt = (Date.parse(ov.now) - Date.parse(prev.now)) / 1000;
        if (dt > 0) rate = `${((ov.accepted - prev.accepted) / dt).toFixed(1)}/s`;
      }
      prev = ov;
      const refused = ov.requests.filter((r) => r.code !== "200").reduce((n, r) => n + r.count, 0);
      const stat = (label, value) => el("div", {}, el("dt", { text: label }), el("dd", { text: value }));
      $("#ingest").replaceChildren(
        stat("Accept rate", rate),
        stat("Accepted since start", num(ov.accepted)),
        stat("Refused since start", num(refused)),
      );
      $("#codes tbody").replaceChildren(...ov.requests
        .sort((a, b) => a.source.localeCompare(b.source) || a.code.localeCompare(b.code))
        .map((r) => el("tr", {}, el("td", { text: r.source }), el("td", {}, badge(r.code, r.code === "200" ? "delivered" : "dead_lettered")), el("td", { class: "num", text: num(r.count) }))));
      $("#sinks tbody").replaceChildren(...ov.sinks.map((s) => el("tr", {},
        el("th", { scope: "row", text: s.name }),
        el("td", { text: s.type }),
        el("td", { class: "num", text: num(s.delivered) }),
        el("td", { class: "num", text: num(s.retried) }),
        el("td", { class: "num" }, s.dead_letters ? el("a", { href: `/dead-letters?sink=${encodeURIComponent(s.name)}`, text: num(s.dead_letters) }) : "0"),
        el("td", { class: "num", text: num(s.pending) }),
        el("td", {}, s.breaker_open ? badge("open") : badge("closed")),
        el("td", { class: s.last_error ? "err" : "", text: s.last_error || "—" }))));
      $("#sinks-empty").hidden = ov.sinks.length > 0;
      $("#expectations tbody").replaceChildren(...ov.expectations.map((x) => el("tr", {},
        el("th", { scope: "row", text: x.name }), el("td", { class: "num", text: num(x.open) }), el("td", { class: "num", text: num(x.missed) }))));
      $("#expectations-empty").hidden = ov.expectations.length > 0;
      $("#store").replaceChildren(
        stat("Stored", bytes(ov.store.bytes)),
        stat("Limit", ov.store.max_bytes ? bytes(ov.store.max_bytes) : "none"),
        stat("Events in history", num(ov.store.history_events)),
      );
      setStatus("#status", "Updated ", when(ov.now), " · refreshes every 2 seconds");
    });
  }

  // ---- live feed ----
  function events() {
    const input = $("#where"), pause = $("#pause"), tbody = $("#feed tbody");
    const rows = new Map(); // id -> {tr, e}
    let where = params.get("where") || "", paused = false, broken = false, gen = 0, first = true;
    // horizon is the server's time at the last answer: later polls ask only
    // for events received since (less a margin for clocks of other relays),
    // or since the oldest shown event whose deliveries have not settled, so
    // that a filter matching little does not rescan history every second.
    let horizon = NaN;
    const settled = (e) => Object.values(e.sinks || {}).every((t) => t.status === "delivered" || t.status === "dead_lettered");
    input.value = where;
    $("#filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      where = input.value.trim();
      keepParams({ where });
      rows.clear(); tbody.replaceChildren();
      broken = false; first = true; horizon = NaN; gen++;
      poll();
    });
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume" : "Pause";
      status();
      if (!paused) poll();
    });
    const status = () => setStatus("#status", paused
      ? "Paused: new events are not shown until you resume."
      : `Live: ${plural(rows.size, "event")} shown, newest first; checking every second.`);
    function row(e) {
      return el("tr", { "data-id": e.id },
        el("td", {}, when(e.received_at)),
        el("td", { text: e.event || "—" }),
        el("td", { text: e.source }),
        el("td", { class: "id" }, el("a", { href: `/events/${e.id}`, text: e.msg_id })),
        el("td", { text: e.rules.length ? e.rules.join(", ") : "—" }),
        el("td", { class: "deliveries" }, trailBadges(e.sinks)));
    }
    async function poll() {
      if (paused || broken) return;
      const mine = gen;
      const q = new URLSearchParams({ limit: "100" });
      if (where) q.set("where", where);
      if (!isNaN(horizon)) {
        let since = horizon;
        for (const { e } of rows.values()) if (!settled(e)) since = Math.min(since, Date.parse(e.received_at));
        q.set("since", new Date(since - 30000).toISOString());
      }
      let res;
      try { res = await api("/api/v1/events?" + q); } catch (e) {
        if (mine !== gen) return;
        showError(e.message);
        if (e.status === 400) broken = true; // a bad filter: wait for a new one
        return;
      }
      if (mine !== gen || paused) return;
      horizon = serverDate;
      clearError();
      for (const e of res.events.slice().reverse()) {
        const old = rows.get(e.id);
        if (old) {
          old.e = e;
          old.tr.querySelector(".deliveries").replaceChildren(...trailBadges(e.sinks));
          continue;
        }
        const tr = row(e);
        if (!first) tr.classList.add("new");
        rows.set(e.id, { tr, e });
        tbody.prepend(tr);
      }
      while (rows.size > 500) { const last = tbody.lastElementChild; rows.delete(Number(last.dataset.id)); last.remove(); }
      first = false;
      $("#empty").hidden = rows.size > 0;
      $("#empty-all").hidden = !!where;
      $("#empty-filter").hidden = !where;
      status();
    }
    every(1000, poll);
  }

  // ---- one event ----
  function eventPage() {
    const id = document.body.dataset.id;
    let ev = null;
    const meta = (pairs) => pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]);
    async function load() {
      try { ev = await api(`/api/v1/events/${encodeURIComponent(id)}`); clearError(); } catch (e) {
        showError(e.status === 404 ? "No such event: the id is wrong, or it has left history (storage.history)." : e.message);
        return false;
      }
      $("h1").replaceChildren(ev.event || "Event", " ", el("span", { class: "muted", text: `#${ev.id}` }));
      document.title = `${ev.event || "Event"} #${ev.id} · relay console`;
      $("#meta").replaceChildren(...meta([
        ["Message id", el("span", { class: "mono", text: ev.msg_id })],
        ["Event", ev.event || "—"],
        ["Source", ev.source],
        ["Received", when(ev.received_at)],
      ]));
      $("#rules").replaceChildren(...(ev.rules.length ? ev.rules.map((r) => el("li", {}, badge(r, "rule"))) : [el("li", { text: "No rule matched this event." })]));
      const sinks = Object.keys(ev.sinks || {}).sort();
      $("#trail tbody").replaceChildren(...sinks.map((s) => {
        const t = ev.sinks[s];
        return el("tr", {}, el("th", { scope: "row", text: s }), el("td", {}, badge(t.status)), el("td", { class: "num", text: num(t.attempts) }),
          el("td", {}, when(t.last_attempt_at)), el("td", { class: t.last_error ? "err" : "", text: t.last_error || "—" }));
      }));
      $("#trail-empty").hidden = sinks.length > 0;
      const pre = $("#payload");
      if (!pre.textContent) pre.textContent = JSON.stringify(ev.payload, null, 2);
      return true;
    }
    (async () => {
      try {
        const names = await sinkNames();
        $("#sink").replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
      } catch (e) { showError(e.message); }
      every(2000, load);
    })();
    $("#replay").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!ev) return;
      const sink = $("#sink").value;
      const q = new URLSearchParams({
        sink,
        where: `msg_id == ${JSON.stringify(ev.msg_id)} && source == ${JSON.stringify(ev.source)}`,
        since: ev.received_at, until: ev.received_at,
      });
      setStatus("#replay-result", "Replaying…");
      try {
        const r = await api("/api/v1/events/replay?" + q, { method: "POST" });
        setStatus("#replay-result", `Queued for delivery to ${sink} (${plural(r.matched, "event")}); the trail above updates as it settles.`);
        load();
      } catch (err) { setStatus("#replay-result", el("span", { class: "error", text: err.message })); }
    });
  }

  // ---- dead letters ----
  function deadLetters() {
    const input = $("#where"), sinkSel = $("#sink"), tbody = $("#dead tbody");
    const rows = new Map(), selected = new Set();
    let where = params.get("where") || "", sink = params.get("sink") || "", broken = false, more = false;
    input.value = where;
    const filterQuery = () => { const q = new URLSearchParams(); if (where) q.set("where", where); if (sink) q.set("sink", sink); return q; };
    function buttons() {
      const n = selected.size;
      $("#replay-selected").disabled = $("#purge-selected").disabled = n === 0;
      $("#replay-selected").textContent = n ? `Replay selected (${n})` : "Replay selected";
      $("#purge-selected").textContent = n ? `Purge selected (${n})` : "Purge selected";
      const all = $("#select-all");
      all.checked = rows.size > 0 && n === rows.size;
      all.indeterminate = n > 0 && n < rows.size;
    }
    function row(d) {
      const box = el("input", { type: "checkbox", "aria-label": `Select dead letter ${d.id}` });
      box.addEventListener("change", () => { if (box.checked) selected.add(d.id); else selected.delete(d.id); buttons(); });
      return el("tr", { "data-id": d.id },
        el("td", {}, box),
        el("td", {}, when(d.last_attempt_at)),
        el("td", { text: d.sink }),
        el("td", { text: d.event || "—" }),
        el("td", { class: "id", text: d.msg_id }),
        el("td", { class: "num", text: num(d.attempts) }),
        el("td", { class: "err", text: d.last_error }),
        el("td", {}, el("button", { type: "button", "aria-controls": "detail", onclick: () => show(d.id), text: "Show" }, el("span", { class: "sr-only", text: ` dead letter ${d.id}` }))));
    }
    async function load() {
      if (broken) return;
      const q = filterQuery(); q.set("limit", "200");
      let res;
      try { res = await api("/api/v1/dlq?" + q); clearError(); } catch (e) {
        showError(e.message);
        if (e.status === 400) broken = true;
        return;
      }
      const ids = new Set(res.dead_letters.map((d) => d.id));
      for (const id of [...rows.keys()]) if (!ids.has(id)) { rows.delete(id); selected.delete(id); }
      const list = res.dead_letters.map((d) => { if (!rows.has(d.id)) rows.set(d.id, row(d)); return rows.get(d.id); });
      reconcile(tbody, list);
      more = !!res.next_cursor;
      $("#empty").hidden = rows.size > 0;
      $("#empty-all").hidden = !!(where || sink);
      $("#empty-filter").hidden = !(where || sink);
      setStatus("#status", `${plural(rows.size, "dead letter")} shown${more ? " (the newest 200; narrow the filter to see others)" : ""}.`);
      buttons();
    }
    async function show(id) {
      let d;
      try { d = await api(`/api/v1/dlq/${id}`); } catch (e) { showError(e.message); return; }
      $("#detail-id").textContent = String(d.id);
      $("#detail-meta").replaceChildren(...[
        ["Sink", d.sink], ["Event", d.event || "—"], ["Message id", d.msg_id], ["Source", d.source],
        ["Rules", (d.rules || []).join(", ") || "—"], ["Attempts", num(d.attempts)], ["Received", when(d.received_at)],
        ["First attempt", when(d.first_attempt_at)], ["Last attempt", when(d.last_attempt_at)], ["Why", d.last_error],
      ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
      $("#detail-payload").textContent = JSON.stringify(d.payload, null, 2);
      const sec = $("#detail");
      sec.hidden = false;
      sec.scrollIntoView({ block: "nearest" });
      $("#detail-payload").focus();
    }
    // count pages through the dead letters the filter selects.
    async function count() {
      let n = 0, cursor = "";
      do {
        const q = filterQuery(); q.set("limit", "1000");
        if (cursor) q.set("cursor", cursor);
        const res = await api("/api/v1/dlq?" + q);
        n += res.dead_letters.length;
        cursor = res.next_cursor || "";
      } while (cursor);
      return n;
    }
    async function each(ids, method, path) {
      const failed = [];
      for (const id of ids) {
        try { await api(path(id), { method }); } catch (e) { failed.push(`${id}: ${e.message}`); }
      }
      return failed;
    }
    async function act(label, fn) {
      clearError();
      setStatus("#result", `${label}…`);
      try { setStatus("#result", await fn()); } catch (e) { showError(e.message); setStatus("#result", ""); }
      await load();
    }
    $("#replay-selected").addEventListener("click", () => act("Replaying", async () => {
      const ids = [...selected];
      const failed = await each(ids, "POST", (id) => `/api/v1/dlq/${id}/replay`);
      ids.forEach((id) => selected.delete(id));
      if (failed.length) showError("Not replayed:\n" + failed.join("\n"));
      return `Replayed ${plural(ids.length - failed.length, "dead letter")}: each is delivered again from attempt 1.`;
    }));
    $("#purge-selected").addEventListener("click", async () => {
      const ids = [...selected];
      if (!await confirmDialog(`Purge ${plural(ids.length, "dead letter")}? They are deleted for good and cannot be replayed.`, `Purge ${num(ids.length)}`)) return;
      act("Purging", async () => {
        const failed = await each(ids, "DELETE", (id) => `/api/v1/dlq/${id}`);
        ids.forEach((id) => selected.delete(id));
        if (failed.length) showError("Not purged:\n" + failed.join("\n"));
        return `Purged ${plural(ids.length - failed.length, "dead letter")}.`;
      });
    });
    $("#replay-all").addEventListener("click", () => act("Replaying", async () => {
      const r = await api("/api/v1/dlq/replay?" + filterQuery(), { method: "POST" });
      const failed = Object.entries(r.failed || {});
      if (failed.length) showError("Not replayed:\n" + failed.map(([id, why]) => `${id}: ${why}`).join("\n"));
      return `Replayed ${plural(r.replayed.length, "dead letter")}.`;
    }));
    $("#purge-all").addEventListener("click", async () => {
      let n;
      try { n = await count(); } catch (e) { showError(e.message); return; }
      if (n === 0) { setStatus("#result", "Nothing to purge: no dead letter matches."); return; }
      const scope = where || sink ? " matching the filter" : "";
      if (!await confirmDialog(`Purge ${plural(n, "dead letter")}${scope}? They are deleted for good and cannot be replayed.`, `Purge ${num(n)}`)) return;
      act("Purging", async () => {
        const r = await api("/api/v1/dlq?" + filterQuery(), { method: "DELETE" });
        selected.clear();
        return `Purged ${plural(r.purged, "dead letter")}.`;
      });
    });
    $("#select-all").addEventListener("change", (e) => {
      for (const [id, tr] of rows) {
        tr.querySelector("input[type=checkbox]").checked = e.target.checked;
        if (e.target.checked) selected.add(id); else selected.delete(id);
      }
      buttons();
    });
    $("#filter").addEventListener("submit", (e) => {
      e.preventDefault();
      where = input.value.trim(); sink = sinkSel.value;
      keepParams({ where, sink });
      rows.clear(); selected.clear(); tbody.replaceChildren();
      broken = false;
      load();
    });
    (async () => {
      try {
        const names = await sinkNames();
        sinkSel.append(...names.map((n) => el("option", { value: n, text: n })));
        sinkSel.value = sink;
      } catch (e) { showError(e.message); }
      every(3000, load);
    })();
  }

  // ---- rules ----
  function rulesPage() {
    let current = [];
    (async () => {
      let r;
      try { r = await api("/api/v1/rules"); } catch (e) { showError(e.message); return; }
      current = r.rules.map((x) => ({ name: x.name, when: x.when, sinks: x.sinks, stop: !!x.stop }));
      $("#rules tbody").replaceChildren(...r.rules.map((x, i) => el("tr", {},
        el("th", { scope: "row", text: current[i].name }),
        el("td", {}, el("code", { text: current[i].when })),
        el("td", { text: (current[i].sinks || []).join(", ") }),
        el("td", { text: current[i].stop ? "yes" : "no" }),
        el("td", { class: "num", text: num(x.matched) }),
        el("td", { class: "num", text: num(x.errors) }))));
      $("#rules-empty").hidden = r.rules.length > 0;
      $("#try-source").replaceChildren(...r.sources.map((s) => el("option", { value: s, text: s })));
      if (!$("#rule-sinks").value && r.sinks.length) $("#rule-sinks").value = r.sinks[0];
    })();
    const out = (sel, ...kids) => $(sel).replaceChildren(...kids);
    const fail = (sel, msg) => out(sel, el("p", { class: "error", role: "alert", text: msg }));
    $("#try-event").addEventListener("submit", async (e) => {
      e.preventDefault();
      let r;
      try {
        r = await api("/api/v1/route?" + new URLSearchParams({ source: $("#try-source").value }), {
          method: "POST", headers: { "Content-Type": "application/json" }, body: $("#try-body").value,
        });
      } catch (err) { fail("#try-event-result", err.message); return; }
      const kids = [el("p", {}, el("strong", { text: "Matched rules: " }), r.rules.length ? r.rules.join(", ") : "none")];
      kids.push(r.deliveries.length
        ? el("ul", {}, r.deliveries.map((d) => el("li", {}, `${d.sink} (${d.type}), by ${d.rules.join(", ")}`)))
        : el("p", { text: "It would go to no sink." }));
      for (const re of r.rule_errors || []) kids.push(el("p", { class: "error", text: `${re.rule}: ${re.error}` }));
      out("#try-event-result", ...kids);
    });
    $("#try-rule").addEventListener("submit", async (e) => {
      e.preventDefault();
      const cand = {
        name: $("#rule-name").value.trim(), when: $("#rule-when").value,
        sinks: $("#rule-sinks").value.split(",").map((s) => s.trim()).filter(Boolean), stop: $("#rule-stop").checked,
      };
      const q = new URLSearchParams();
      if ($("#rule-since").value.trim()) q.set("since", $("#rule-since").value.trim());
      out("#try-rule-result", el("p", { text: "Routing stored events again…" }));
      let r;
      try {
        r = await api("/api/v1/backtest?" + q, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rules: [...current, cand] }) });
      } catch (err) { fail("#try-rule-result", err.message); return; }
      const c = r.rules[cand.name] || { after: 0, gained: [] };
      const links = (ids) => ids.length ? ids.map((id, i) => [i ? ", " : "", el("a", { href: `/events/${id}`, text: id })]) : "—";
      const table = (title, counts) => el("div", { class: "table-wrap" }, el("table", {},
        el("caption", { text: title }),
        el("thead", {}, el("tr", {}, ["Name", "Before", "After", "Gained (examples)", "Lost (examples)"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, Object.keys(counts).sort().map((k) => el("tr", {}, el("th", { scope: "row", text: k }),
          el("td", { class: "num", text: num(counts[k].before) }), el("td", { class: "num", text: num(counts[k].after) }),
          el("td", {}, links(counts[k].gained)), el("td", {}, links(counts[k].lost)))))));
      out("#try-rule-result",
        el("p", {}, el("strong", { text: `${cand.name} would match ${plural(c.after, "stored event")}` }), ` of ${plural(r.events, "event")} compared; ${plural(r.changed, "event")} would be routed differently.`),
        ...Object.entries(r.rule_errors || {}).map(([k, n]) => el("p", { class: "error", text: `${k} failed at run time on ${plural(n, "event")}.` })),
        table("Per rule", r.rules), table("Per sink", r.sinks));
    });
  }

  // ---- config ----
  async function configPage() {
    let c;
    try { c = await api("/api/v1/config"); } catch (e) { showError(e.message); return; }
    const ll = c.last_load;
    const pairs = [["Result", ll.ok ? badge("loaded", "delivered") : badge("failed", "dead_lettered")], ["Last successful load", when(ll.succeeded_at)]];
    if (ll.failed_at) pairs.push(["Failed reload", when(ll.failed_at)], ["Problems", el("ul", {}, (ll.errors || []).map((x) => el("li", { class: "mono", text: x })))]);
    $("#reload").replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
    $("#config").textContent = yaml(c.config);
  }

  const pages = { overview, events, event: eventPage, deadletters: deadLetters, rules: rulesPage, config: configPage };
  labelCells();
  if (pages[page]) pages[page]();
})();
