// The live page: one card per pump, fed by Server-Sent Events from `pumpctl dashboard`.
// State is always told in words and an icon as well as colour (see dashboard.css).
"use strict";

(function () {
  const pumps = new Map(); // key -> {key, site, pump_id, run, planned, live, history, histRun, el}
  const dirty = new Set();
  let flushQueued = false;
  let stream = {up: false};
  let broker = {connected: false, broker: "", error: ""};
  let commandsEnabled = false;
  let session = {loggedIn: false, csrf: null};
  let pendingCommand = null;
  const MAX_POINTS = 3000;

  const $ = (sel, root = document) => root.querySelector(sel);

  // -- formatting -----------------------------------------------------------------------

  function num(v, digits) {
    return typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–";
  }

  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
  }

  function clock(value) {
    if (value === null || value === undefined) return "–";
    const d = new Date(value);
    if (isNaN(d.getTime())) return "–";
    const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false});
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.toLocaleDateString([], {month: "short", day: "numeric"})} ${time}`;
  }

  // A run at `--speed N` stamps its records with its own clock, which runs ahead of the wall
  // clock this dashboard reads (so does a controller whose host clock is off). Its times are
  // then labelled "run clock" and ours "wall clock", so that an alarm and a disconnection
  // are never compared across the two unlabelled.
  const CLOCKS_AGREE_MS = 5000;

  function clocksApart(live) {
    const ahead = live.run_clock_ahead_ms;
    return typeof ahead === "number" && Math.abs(ahead) > CLOCKS_AGREE_MS;
  }

  function runClock(live, value) {
    return clock(value) + (clocksApart(live) ? " run clock" : "");
  }

  function wallClock(live, value) {
    return clock(value) + (clocksApart(live) ? " wall clock" : "");
  }

  function words(kind) {
    return String(kind || "").replace(/_/g, " ");
  }

  // -- state of a pump, in words --------------------------------------------------------

  const PUMP_STATUS = {
    infusing: ["infusing", "▶", "INFUSING"], withdrawing: ["infusing", "◀", "WITHDRAWING"],
    paused: ["paused", "❚❚", "PAUSED"], timed_pause: ["paused", "❚❚", "TIMED PAUSE"],
    waiting_trigger: ["paused", "…", "WAITING FOR TRIGGER"], purging: ["infusing", "»", "PURGING"],
    stopped: ["stopped", "■", "STOPPED"], alarm: ["alarm", "⚠", "ALARM"],
  };
  const RUN_END = {
    completed: ["completed", "✓", "COMPLETED"], aborted: ["stopped", "■", "ABORTED"],
    faulted: ["faulted", "⚠", "FAULTED (safety stop)"],
  };

  function runActive(p) {
    if (p.run) return p.run.run_state === "running";
    return !!(p.live && p.live.telemetry);
  }

  function deriveState(p) {
    const live = p.live || {};
    const t = live.telemetry;
    if (!stream.up || !broker.connected) return ["stale", "?", "UNKNOWN (no broker)"];
    if (live.online === false && runActive(p)) return ["lost", "✖", "CONNECTION LOST"];
    if (live.alarm && live.alarm.active && runActive(p)) return ["alarm", "⚠", "ALARM"];
    if (p.run && RUN_END[p.run.run_state]) return RUN_END[p.run.run_state];
    if (live.online === false) return ["offline", "✖", "OFFLINE"];
    if (t && PUMP_STATUS[t.pump_status]) return PUMP_STATUS[t.pump_status];
    if (t) return ["stopped", "■", String(t.pump_status).toUpperCase()];
    return ["idle", "○", live.online ? "ONLINE, NO RUN YET" : "NO DATA"];
  }

  // -- cards ----------------------------------------------------------------------------

  function model(key) {
    let p = pumps.get(key);
    if (!p) {
      p = {key, run: null, planned: [], live: null, history: [], histRun: null, el: null};
      pumps.set(key, p);
    }
    return p;
  }

  function createCard(p) {
    const el = $("#card-template").content.firstElementChild.cloneNode(true);
    el.dataset.key = p.key;
    $(".site", el).textContent = p.site;
    $(".pump", el).textContent = p.pump_id;
    $(".cmd-pause", el).addEventListener("click", () => askCommand(p.key, "pause"));
    $(".cmd-stop", el).addEventListener("click", () => askCommand(p.key, "stop"));
    const main = $("#pumps");
    const after = [...main.children].find((c) => c.dataset.key > p.key);
    main.insertBefore(el, after || null);
    $("#empty").hidden = true;
    return el;
  }

  function setBar(bar, fill, fraction) {
    const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
    fill.style.width = `${pct.toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", pct.toFixed(0));
  }

  function render(p) {
    const el = p.el || (p.el = createCard(p));
    const live = p.live || {};
    const run = p.run;
    const t = live.telemetry;
    const [code, icon, text] = deriveState(p);
    el.className = `card state-${code}`;
    $(".state-icon", el).textContent = icon;
    $(".state-text", el).textContent = text;

    const conn = $(".conn", el);
    conn.hidden = live.online !== false && !(live.online === undefined && !t);
    if (live.online === false) {
      const lastSample = t && clocksApart(live)
        ? `; its last sample, #${t.seq}, at ${runClock(live, t.time)}` : "";
      conn.textContent = runActive(p)
        ? `✖ Controller went offline during the run (Last Will at ` +
          `${wallClock(live, live.status_since_ms)}${lastSample}): ` +
          "check the pump itself. The figures below are the last ones heard."
        : `Controller disconnected at ${wallClock(live, live.status_since_ms)} after the run` +
          `${lastSample}.`;
    } else if (live.online === null || live.online === undefined) {
      conn.textContent = "No online/offline status heard from this controller.";
    }

    const alarm = live.alarm;
    const box = $(".alarm", el);
    box.hidden = !alarm;
    if (alarm) {
      box.classList.toggle("cleared", !alarm.active);
      $(".alarm-kind", el).textContent = (alarm.active ? "ALARM: " : "Cleared alarm: ") +
        words(alarm.kind).toUpperCase();
      $(".alarm-time", el).textContent = `at ${runClock(live, alarm.time)}` +
        (alarm.active ? "" : `, cleared ${runClock(live, alarm.cleared_time)}`);
      $(".alarm-message", el).textContent = [alarm.source, alarm.message]
        .filter(Boolean).join(": ");
    }

    const drug = (t && t.drug_name) || (run && run.drug_name) || "–";
    const conc = (t && t.drug_concentration_mg_per_ml) ?? (run && run.drug_concentration_mg_per_ml);
    $(".drug-name", el).textContent = drug;
    $(".drug-conc", el).textContent = conc != null ? `${num(conc, 3)} mg/mL` : "";
    $(".plan", el).textContent = run ? `· ${run.plan}${run.weight_kg ? ` · ${run.weight_kg} kg` : ""}` : "";

    const ended = run && run.run_state !== "running";
    // After the run the last sample's rate is history, not what the pump does now.
    const paused = t && PUMP_STATUS[t.pump_status] && PUMP_STATUS[t.pump_status][0] === "paused";
    $(".rate", el).textContent = ended ? "run ended"
      : (t ? `${paused ? "paused, set " : ""}${num(t.flow_rate_ml_h, 2)} mL/h` : "–");
    $(".dose-rate", el).textContent = ended ? "–" : (t ? `${num(t.dose_rate_mg_h, 2)} mg/h` : "–");
    $(".remaining", el).textContent = ended ? "ended" : (t ? duration(t.time_remaining_s) : "–");
    const elapsed = t ? t.elapsed_s : (ended ? run.elapsed_s : null);
    $(".elapsed", el).textContent = elapsed == null ? "–"
      : `${duration(elapsed)}${run ? ` of ${duration(run.duration_s)}` : ""}`;

    const vtbi = (run && run.vtbi_ml) || (t && t.vtbi_ml) || null;
    const delivered = t ? t.volume_delivered_ml : (run ? run.delivered_volume_ml : null);
    const planNow = t ? t.planned_volume_ml : null;
    $(".volume-text", el).textContent = delivered == null ? "–"
      : `${num(delivered, 3)} of ${num(vtbi, 3)} mL` +
        (vtbi ? ` (${num((100 * delivered) / vtbi, 0)} %)` : "") +
        (planNow != null && !ended ? ` · plan now ${num(planNow, 3)}` : "");
    setBar($(".progress .bar", el), $(".volume-fill", el), vtbi ? delivered / vtbi : 0);

    const totalDose = run ? run.total_dose_mg : null;
    const dose = t ? t.dose_delivered_mg : (run ? run.delivered_dose_mg : null);
    const perKg = t && t.dose_delivered_mg_per_kg != null ? ` (${num(t.dose_delivered_mg_per_kg, 3)} mg/kg)` : "";
    $(".dose-text", el).textContent = dose == null ? "–"
      : `${num(dose, 3)} of ${num(totalDose, 3)} mg${perKg}`;
    setBar($(".dose-bar", el), $(".dose-fill", el), totalDose ? dose / totalDose : 0);

    window.PumpChart.draw($(".chart-box", el), {
      planned: p.planned, history: p.history,
      start: runActive(p) || !!ended,
      end: ended && run.delivered_volume_ml != null ? [run.elapsed_s, run.delivered_volume_ml] : null,
    });
    renderTimeline(p, $(".timeline-list", el), elapsed, ended);

    const ev = live.last_event;
    $(".last-event", el).textContent = ev
      ? `${words(ev.event)}${ev.sender ? ` by ${ev.sender}` : ""} at ${runClock(live, ev.time)}` +
        `${ev.reason ? `: ${ev.reason}` : ""}${ev.outcome ? ` (${ev.outcome})` : ""}`
      : "";

    const commands = $(".commands", el);
    commands.hidden = !(commandsEnabled && live.accepts_commands);

    $(".meta", el).textContent = [
      run ? `run ${run.run_id}` : (live.run_id ? `run ${live.run_id}` : ""),
      t ? `sample #${t.seq} at ${runClock(live, t.time)}` : "",
      live.heard_ms ? `heard ${wallClock(live, live.heard_ms)}` : "",
      clocksApart(live) ? `the run's clock is ${duration(Math.abs(live.run_clock_ahead_ms) / 1000)} ` +
        `${live.run_clock_ahead_ms > 0 ? "ahead of" : "behind"} the wall clock ` +
        "(a run at --speed, or a host clock that is off)" : "",
    ].filter(Boolean).join(" · ");
  }

  function renderTimeline(p, list, elapsed, ended) {
    const run = p.run;
    const items = [];
    if (!run || !run.monitoring || !run.monitoring.length) {
      list.replaceChildren(li("·", "No monitoring timeline in this run's plan.", "none"));
      return;
    }
    const done = new Set((p.live && p.live.monitoring_done) || []);
    const isDone = (m) => done.has(m.at_s) || (elapsed != null && m.at_s <= elapsed);
    const when = (m) => {
      const left = elapsed != null && !ended ? m.at_s - elapsed : null;
      return `${clock(m.due_time)}${left != null && left > 0 ? ` (in ${duration(left)})` : ""}`;
    };
    const vitals = run.monitoring.filter((m) => m.kind === "vitals");
    const vitalsDone = vitals.filter(isDone).length;
    const nextVitals = vitals.find((m) => !isDone(m));
    if (nextVitals && !ended) {
      items.push(li("▶", `Next vital signs: ${when(nextVitals)} — ${nextVitals.label}`, "next"));
    }
    if (vitals.length) {
      items.push(li(vitalsDone ? "✓" : "○", `Vital-sign checks due so far: ${vitalsDone} of ${vitals.length}`,
        vitalsDone ? "done" : "todo"));
    }
    for (const m of run.monitoring.filter((x) => x.kind !== "vitals")) {
      const d = isDone(m);
      items.push(li(d ? "✓" : "○", `${m.label}: ${d ? clock(m.due_time) : when(m)}`, d ? "done" : "todo"));
    }
    list.replaceChildren(...items);
  }

  function li(icon, text, cls) {
    const item = document.createElement("li");
    item.className = cls;
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = icon;
    item.append(mark, " ", text);
    return item;
  }

  function schedule(key) {
    dirty.add(key);
    if (flushQueued) return;
    flushQueued = true;
    // Updates coalesce into one paint; a hidden tab still catches up every quarter second.
    if (document.hidden) setTimeout(flush, 250); else requestAnimationFrame(flush);
  }

  let shownCount = -1;

  function flush() {
    flushQueued = false;
    for (const key of dirty) {
      const p = pumps.get(key);
      if (p) render(p);
    }
    dirty.clear();
    if (pumps.size !== shownCount) renderBroker();
  }

  function renderAll() {
    for (const key of pumps.keys()) schedule(key);
    renderBroker();
  }

  // -- frames from the server -----------------------------------------------------------

  function addPoint(p, point) {
    if (!point) return;
    const h = p.history;
    if (h.length && point[0] <= h[h.length - 1][0]) return;
    h.push(point);
    if (h.length > MAX_POINTS) {
      const last = h[h.length - 1];
      p.history = h.slice(0, -1).filter((_, i) => i % 2 === 0).concat([last]);
    }
  }

  function applyRun(data) {
    const p = model(data.key);
    Object.assign(p, {site: data.site, pump_id: data.pump_id, run: data.run, planned: data.planned || []});
    schedule(p.key);
  }

  function applyLive(data) {
    const p = model(data.key);
    p.site = data.site;
    p.pump_id = data.pump_id;
    if (data.run_id !== p.histRun) {
      p.history = [];
      p.histRun = data.run_id;
    }
    p.live = data;
    addPoint(p, data.point);
    schedule(p.key);
  }

  function applySnapshot(data) {
    for (const p of pumps.values()) if (p.el) p.el.remove();
    pumps.clear();
    commandsEnabled = !!data.commands;
    broker = data.broker;
    for (const full of data.pumps) {
      applyRun(full);
      const p = model(full.key);
      p.live = full;
      p.histRun = full.run_id;
      p.history = (full.history || []).slice();
    }
    $("#empty").hidden = data.pumps.length > 0;
    $("#account").hidden = !commandsEnabled;
    renderAll();
  }

  function renderBroker() {
    const box = $("#broker");
    let icon, text, cls;
    if (!stream.up) {
      [icon, text, cls] = ["⚠", "Lost the dashboard server: retrying. Figures below are stale.", "bad"];
    } else if (!broker.connected) {
      [icon, text, cls] = ["⚠", `Broker ${broker.broker} unreachable${broker.error ? ` (${broker.error})` : ""}: figures below are stale.`, "bad"];
    } else {
      [icon, text, cls] = ["✓", `Live from ${broker.broker} · ${pumps.size} pump${pumps.size === 1 ? "" : "s"}`, "good"];
    }
    shownCount = pumps.size;
    box.className = `broker ${cls}`;
    $(".icon", box).textContent = icon;
    $(".text", box).textContent = text;
    document.body.classList.toggle("stale", cls === "bad");
  }

  function connect() {
    const source = new EventSource("/events");
    source.addEventListener("snapshot", (e) => { stream.up = true; applySnapshot(JSON.parse(e.data)); });
    source.addEventListener("run", (e) => applyRun(JSON.parse(e.data)));
    source.addEventListener("live", (e) => applyLive(JSON.parse(e.data)));
    source.addEventListener("broker", (e) => { broker = JSON.parse(e.data); renderAll(); });
    source.addEventListener("error", () => { stream.up = false; renderAll(); });
  }

  // -- login and remote commands --------------------------------------------------------

  async function refreshSession() {
    try {
      const r = await fetch("/api/session", {cache: "no-store"});
      const s = await r.json();
      commandsEnabled = s.commands;
      session = {loggedIn: s.logged_in, csrf: s.csrf};
    } catch (err) {
      session = {loggedIn: false, csrf: null};
    }
    renderAccount();
  }

  function renderAccount() {
    $("#account").hidden = !commandsEnabled;
    $("#account-text").textContent = session.loggedIn
      ? "Logged in: stop and pause buttons are live."
      : "Stop/pause need a login.";
    $("#login-button").hidden = session.loggedIn;
    $("#logout-button").hidden = !session.loggedIn;
  }

  async function errorText(response) {
    const text = (await response.text()).trim();
    return `${response.status}: ${text || response.statusText}`;
  }

  function askCommand(key, command) {
    if (!session.loggedIn) {
      pendingCommand = {key, command};
      openLogin();
      return;
    }
    const p = pumps.get(key);
    pendingCommand = {key, command};
    $("#command-title").textContent = `${command === "stop" ? "Stop" : "Pause"} ${key}?`;
    $("#command-text").textContent = command === "stop"
      ? "The run stops the pump and ends. It cannot be restarted from this page."
      : "The pump pauses. Only the bench (pumpctl) can resume it; this page never starts a pump.";
    $("#command-reason").value = "";
    $("#command-error").textContent = "";
    $("#command-submit").textContent = command === "stop" ? "■ Stop the infusion" : "❚❚ Pause the infusion";
    if (p && p.el) $(".cmd-note", p.el).textContent = "";
    $("#command-dialog").showModal();
    $("#command-reason").focus();
  }

  async function sendCommand(event) {
    event.preventDefault();
    const {key, command} = pendingCommand || {};
    if (!key) return;
    const [site, pump] = key.split("/");
    const response = await fetch(`/api/pumps/${encodeURIComponent(site)}/${encodeURIComponent(pump)}/${command}`, {
      method: "POST", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": session.csrf || ""},
      body: JSON.stringify({reason: $("#command-reason").value}),
    });
    if (response.status === 401) {
      session = {loggedIn: false, csrf: null};
      renderAccount();
      $("#command-dialog").close();
      openLogin();
      return;
    }
    if (!response.ok) {
      $("#command-error").textContent = `Not sent. ${await errorText(response)}`;
      return;
    }
    const body = await response.json();
    $("#command-dialog").close();
    const p = pumps.get(key);
    if (p && p.el) {
      $(".cmd-note", p.el).textContent = `${command} sent at ${clock(Date.now())} on ${body.topic}: ` +
        "watch the run's state above for the pump's answer.";
    }
    pendingCommand = null;
  }

  function openLogin() {
    $("#login-error").textContent = "";
    $("#login-password").value = "";
    $("#login-dialog").showModal();
    $("#login-password").focus();
  }

  async function login(event) {
    event.preventDefault();
    $("#login-submit").disabled = true;
    try {
      const response = await fetch("/api/login", {
        method: "POST", cache: "no-store", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({password: $("#login-password").value}),
      });
      if (!response.ok) {
        $("#login-error").textContent = `Not logged in. ${await errorText(response)}`;
        return;
      }
      const body = await response.json();
      session = {loggedIn: true, csrf: body.csrf};
      $("#login-dialog").close();
      renderAccount();
      if (pendingCommand) askCommand(pendingCommand.key, pendingCommand.command);
    } finally {
      $("#login-submit").disabled = false;
    }
  }

  async function logout() {
    await fetch("/api/logout", {method: "POST", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": session.csrf || ""}, body: "{}"});
    session = {loggedIn: false, csrf: null};
    renderAccount();
  }

  function wire() {
    $("#login-form").addEventListener("submit", login);
    $("#command-form").addEventListener("submit", sendCommand);
    $("#login-cancel").addEventListener("click", () => { pendingCommand = null; $("#login-dialog").close(); });
    $("#command-cancel").addEventListener("click", () => { pendingCommand = null; $("#command-dialog").close(); });
    $("#login-button").addEventListener("click", openLogin);
    $("#logout-button").addEventListener("click", logout);
  }

  wire();
  refreshSession();
  connect();
})();
