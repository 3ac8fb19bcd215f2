// The fusionizer serve dashboard: polls /-/state, /-/routes and /-/traces once a second and
// draws them. Plain DOM and inline SVG, no library; every value is set with textContent, never
// parsed as HTML. Read-only: it only ever sends GET requests.
"use strict";

(function () {
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "fusionizer-token";

  // The token, when serve asks for one: from the page's fragment (#token=…, never sent to the
  // server) or what was typed into the form, kept for this tab only.
  let token = null;
  try {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    token = fragment.get("token") || window.sessionStorage.getItem(TOKEN_KEY);
    if (fragment.get("token")) {
      window.sessionStorage.setItem(TOKEN_KEY, token);
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  } catch (e) {
    token = null;
  }

  let countdown = null; // {phase, inMs, at: performance.now() when read}
  let polls = 0;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else if (key === "title") node.title = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, value);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 1000) return (value / 1000).toFixed(2) + " s";
    if (value >= 10) return value.toFixed(0) + " ms";
    return value.toFixed(2) + " ms";
  }

  function duration(msLeft) {
    const s = Math.max(0, Math.ceil(msLeft / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = s % 60;
    if (h > 0) return `${h}h ${m}m ${rest}s`;
    if (m > 0) return `${m}m ${rest}s`;
    return `${rest}s`;
  }

  function clock(rfc3339) {
    const date = new Date(rfc3339);
    return isNaN(date) ? rfc3339 : date.toLocaleTimeString();
  }

  async function get(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) {
      const error = new Error("unauthorized");
      error.unauthorized = true;
      throw error;
    }
    if (!response.ok) {
      const error = new Error(`${path}: ${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // ---- phases -------------------------------------------------------------------------------

  function renderPhases(state) {
    const list = $("phases");
    list.replaceChildren();
    if (state.phases.length === 0) {
      list.append(el("li", { class: "phase current" }, "no phases: every task runs alone"));
    }
    for (const phase of state.phases) {
      const current = phase.phase === state.current_phase;
      const next = state.next_change && state.next_change.phase === phase.phase;
      const classes = ["phase"];
      if (current) classes.push("current");
      if (next) classes.push("next");
      if (phase.at === null) classes.push("unscheduled");
      const groups = el("div", { class: "groups" });
      for (const group of phase.groups) {
        groups.append(el("span", { class: "group" }, group.join(" + ")));
      }
      const at = phase.at === null ? null : new Date(phase.at);
      const past = at !== null && at.getTime() <= new Date(state.now).getTime();
      const when =
        at === null
          ? "not applied in this run"
          : `${current ? "in force, " : ""}${past ? "applied" : "due"} ${clock(phase.at)}`;
      list.append(
        el(
          "li",
          { class: classes.join(" "), "data-phase": String(phase.phase) },
          el("div", { class: "phase-title" }, `Phase ${phase.phase}`, el("span", { class: "after" }, `+${phase.after}`)),
          groups,
          el("div", { class: "when" }, when)
        )
      );
    }
    countdown = state.next_change
      ? { phase: state.next_change.phase, inMs: state.next_change.in_ms, at: performance.now() }
      : null;
    tick();
  }

  function tick() {
    const target = $("countdown");
    if (!countdown) {
      target.textContent = "";
      return;
    }
    const left = countdown.inMs - (performance.now() - countdown.at);
    target.textContent = `phase ${countdown.phase} in ${duration(left)}`;
  }

  // ---- functions ----------------------------------------------------------------------------

  function renderFunctions(state, routes) {
    const box = $("functions");
    box.replaceChildren();
    const byFunction = new Map();
    for (const [task, route] of Object.entries(routes.routes)) {
      if (!byFunction.has(route.function)) byFunction.set(route.function, { route, tasks: [] });
      byFunction.get(route.function).tasks.push(task);
    }
    const workersOf = new Map(state.functions.map((f) => [f.name, f.workers]));
    const stats = new Map(state.tasks.map((t) => [t.task, t]));
    if (byFunction.size === 0) box.append(el("p", { class: "empty" }, "no routes yet"));
    for (const [name, { route, tasks }] of [...byFunction.entries()].sort()) {
      const workers = workersOf.get(name);
      const dots = el("div", { class: "workers" });
      if (workers === undefined || workers === null) {
        dots.append(el("span", { class: "hint" }, "workers run by the platform"));
      } else {
        for (const worker of workers) {
          const pid = worker.pid === null ? "no process" : `pid ${worker.pid}`;
          dots.append(
            el("span", {
              class: `worker ${worker.state}`,
              "data-worker-state": worker.state,
              title: `worker ${worker.index}: ${worker.state} (${pid})`,
            })
          );
        }
      }
      const rows = el("tbody");
      for (const task of tasks.sort()) {
        const s = stats.get(task) || {};
        rows.append(
          el(
            "tr",
            { "data-task": task },
            el("th", { scope: "row" }, task),
            el("td", {}, s.rate_per_s === undefined ? "–" : s.rate_per_s.toFixed(1) + "/s"),
            el("td", {}, ms(s.p50_ms)),
            el("td", {}, ms(s.p99_ms)),
            el("td", { class: s.window_errors > 0 ? "error" : "" }, String(s.window_errors || 0))
          )
        );
      }
      box.append(
        el(
          "article",
          { class: "function", "data-function": name, "data-tasks": tasks.sort().join(",") },
          el(
            "header",
            {},
            el("h3", {}, name),
            el("span", { class: `state ${route.state}` }, route.state),
            route.inflight > 0 ? el("span", { class: "hint" }, `${route.inflight} in flight`) : null
          ),
          dots,
          el(
            "table",
            { class: "tasks" },
            el("thead", {}, el("tr", {}, el("th", {}, "task"), el("th", {}, "rate"), el("th", {}, "p50"), el("th", {}, "p99"), el("th", { title: "status ≥ 500 in the last 60 s" }, "errors"))),
            rows
          )
        )
      );
    }
    const unrouted = state.tasks.filter((t) => t.function === null && !(t.task in routes.routes));
    if (unrouted.length > 0) {
      box.append(
        el("p", { class: "hint" }, "without a route: " + unrouted.map((t) => t.task).join(", "))
      );
    }
  }

  // ---- call graph ---------------------------------------------------------------------------

  function layers(nodes, edges) {
    // Longest-path layering from the tasks nobody calls; a cycle stops at the node count.
    const depth = new Map(nodes.map((n) => [n, 0]));
    for (let round = 0; round < nodes.length; round++) {
      let changed = false;
      for (const e of edges) {
        if (e.caller === e.callee) continue;
        const d = depth.get(e.caller) + 1;
        if (d > depth.get(e.callee) && d < nodes.length) {
          depth.set(e.callee, d);
          changed = true;
        }
      }
      if (!changed) break;
    }
    return depth;
  }

  function renderGraph(routes, traces, tracesError) {
    const box = $("graph");
    box.replaceChildren();
    if (tracesError) {
      box.append(el("p", { class: "empty" }, `no traces: ${tracesError}`));
      return;
    }
    const edges = traces.edges;
    const names = new Set(Object.keys(routes.routes));
    for (const e of edges) {
      names.add(e.caller);
      names.add(e.callee);
    }
    const nodes = [...names].sort();
    if (nodes.length === 0) {
      box.append(el("p", { class: "empty" }, "no tasks"));
      return;
    }
    const depth = layers(nodes, edges);
    const columns = new Map();
    for (const n of nodes) {
      const d = depth.get(n);
      if (!columns.has(d)) columns.set(d, []);
      columns.get(d).push(n);
    }
    const W = 140, H = 44, GX = 170, GY = 40, PAD = 30;
    const pos = new Map();
    let rows = 0;
    for (const [d, column] of columns) {
      column.forEach((n, i) => pos.set(n, { x: PAD + d * (W + GX), y: PAD + i * (H + GY) }));
      rows = Math.max(rows, column.length);
    }
    const width = PAD * 2 + columns.size * W + (columns.size - 1) * GX;
    const height = PAD * 2 + rows * H + (rows - 1) * GY + 20;
    const root = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width: String(width),
      height: String(height),
      role: "img",
      "aria-label": "call graph",
    });
    const defs = svg("defs");
    for (const via of ["in-process", "proxy"]) {
      const marker = svg("marker", {
        id: `arrow-${via}`,
        viewBox: "0 0 10 10",
        refX: "9",
        refY: "5",
        markerWidth: "7",
        markerHeight: "7",
        orient: "auto-start-reverse",
      });
      marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: `arrow ${via}` }));
      defs.append(marker);
    }
    root.append(defs);
    // Edges between the same pair fan out so that each stays visible (before and after a
    // regroup the same call is one proxied and one in-process edge).
    const seen = new Map();
    for (const e of edges) {
      const key = `${e.caller}>${e.callee}`;
      const k = seen.get(key) || 0;
      seen.set(key, k + 1);
      const a = pos.get(e.caller), b = pos.get(e.callee);
      let d, lx, ly;
      if (e.caller === e.callee) {
        const x = a.x + W / 2, y = a.y;
        d = `M ${x - 12} ${y} C ${x - 40} ${y - 50 - k * 14}, ${x + 40} ${y - 50 - k * 14}, ${x + 12} ${y}`;
        lx = x; ly = y - 40 - k * 14;
      } else {
        const forward = b.x > a.x;
        const x1 = forward ? a.x + W : a.x + W / 2, y1 = forward ? a.y + H / 2 : a.y + H;
        const x2 = forward ? b.x : b.x + W / 2, y2 = forward ? b.y + H / 2 : b.y;
        const bend = (k % 2 === 0 ? -1 : 1) * (22 + Math.floor(k / 2) * 26) + (forward ? 0 : 60);
        const mx = (x1 + x2) / 2 + (forward ? 0 : bend), my = (y1 + y2) / 2 + (forward ? bend : 0);
        d = `M ${x1} ${y1} Q ${mx} ${my} ${x2} ${y2}`;
        lx = (x1 + 2 * mx + x2) / 4; ly = (y1 + 2 * my + y2) / 4;
      }
      const group = svg("g", {
        class: "call",
        "data-edge": `${e.caller}>${e.callee}`,
        "data-mode": e.mode,
        "data-via": e.via,
        "data-count": String(e.count),
      });
      const title = `${e.caller} → ${e.callee}: ${e.count} ${e.mode} call(s) ${e.via === "proxy" ? "through the proxy" : "in-process"}, ${e.errors} error(s), p50 ${ms(e.p50_ms)}, p99 ${ms(e.p99_ms)}`;
      group.append(svg("title", {}, title));
      group.append(svg("path", { d, class: `edge ${e.mode} ${e.via}`, "marker-end": `url(#arrow-${e.via})` }));
      const label = `${e.count}× ${e.mode}${e.errors ? `, ${e.errors} err` : ""}`;
      // The first edge of a pair bends up with its label above; the next bends down.
      const above = e.caller === e.callee || k % 2 === 0;
      group.append(svg("text", { x: String(lx), y: String(ly + (above ? -5 : 13)), class: `edge-label ${e.via}`, "text-anchor": "middle" }, label));
      root.append(group);
    }
    for (const n of nodes) {
      const p = pos.get(n);
      const route = routes.routes[n];
      const g = svg("g", { class: "node", "data-node": n });
      g.append(svg("rect", { x: String(p.x), y: String(p.y), width: String(W), height: String(H), rx: "8", class: route ? "routed" : "unrouted" }));
      g.append(svg("text", { x: String(p.x + W / 2), y: String(p.y + 19), "text-anchor": "middle", class: "node-name" }, n));
      g.append(svg("text", { x: String(p.x + W / 2), y: String(p.y + 35), "text-anchor": "middle", class: "node-function" }, route ? route.function : "no route"));
      root.append(g);
    }
    box.append(root);
    if (edges.length === 0) box.append(el("p", { class: "hint" }, "no task-to-task calls seen yet"));
  }

  // ---- optimizer ----------------------------------------------------------------------------

  function renderOptimizer(state) {
    $("optimizer-kind").textContent = state.optimizer.kind;
    const box = $("proposal");
    box.replaceChildren();
    const proposal = state.optimizer.proposal;
    if (!proposal) {
      box.append(el("p", { class: "empty", "data-proposal": "none" }, "no proposal"));
      return;
    }
    const side = (which, title, groups) =>
      el("div", { class: "side", "data-side": which }, el("h3", {}, title), ...groups.map((g) => el("div", { class: "group" }, g.join(" + "))));
    box.append(
      el("div", { class: "proposal", "data-proposal": "some" }, side("before", "now", proposal.before), el("div", { class: "arrow-big" }, "→"), side("after", "proposed", proposal.after))
    );
    if (proposal.reasons.length) box.append(el("ul", { class: "reasons" }, ...proposal.reasons.map((r) => el("li", {}, r))));
  }

  // ---- transitions --------------------------------------------------------------------------

  function renderTransitions(state) {
    const body = $("transitions").tBodies[0];
    body.replaceChildren();
    if (state.transitions.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: "7", class: "empty" }, "none yet")));
    }
    for (const t of state.transitions) {
      const result = t.ok ? "ok" : t.error || t.failed.map((f) => `${f.function}: ${f.error}`).join("; ") || "failed";
      const moves = t.moved.map((m) => `${m.task}: ${m.from || "∅"} → ${m.to}`).join(", ");
      body.append(
        el(
          "tr",
          { class: t.ok ? "" : "failed", "data-reason": t.reason },
          el("td", {}, clock(t.started)),
          el("td", {}, t.reason),
          el("td", {}, t.phase === null ? "–" : String(t.phase)),
          el("td", {}, ms(t.switched_after_ms)),
          el("td", {}, ms(t.duration_ms)),
          el("td", { class: t.ok ? "ok" : "error" }, result),
          el("td", {}, moves || "–")
        )
      );
    }
  }

  // ---- polling ------------------------------------------------------------------------------

  function showStatus(text, kind) {
    const status = $("status");
    status.textContent = text;
    status.className = `status ${kind}`;
  }

  function askForToken(wrong) {
    $("board").hidden = true;
    $("token-form").hidden = false;
    const error = $("token-error");
    error.hidden = !wrong;
    error.textContent = wrong ? "serve refused that token" : "";
    showStatus("needs a token", "warn");
  }

  async function poll() {
    let state, routes;
    try {
      [state, routes] = await Promise.all([get("state"), get("routes")]);
    } catch (error) {
      if (error.unauthorized) {
        askForToken(Boolean(token));
        return; // polling resumes when a token is given
      }
      showStatus(`cannot reach serve (${error.message}); retrying`, "error");
      setTimeout(poll, POLL_MS);
      return;
    }
    let traces = null, tracesError = null;
    try {
      traces = await get("traces");
    } catch (error) {
      tracesError = error.status === 404 ? "this serve has no /-/traces" : error.message;
    }
    $("board").hidden = false;
    $("token-form").hidden = true;
    polls += 1;
    document.body.dataset.polls = String(polls);
    $("project").textContent = state.project ? `${state.project} · ${state.platform}` : "serve";
    const health = state.draining ? ["shutting down", "warn"] : state.ready ? ["live", "ok"] : ["starting", "warn"];
    showStatus(health[0], health[1]);
    $("updated").textContent = `Updated ${clock(state.now)}.`;
    renderPhases(state);
    renderFunctions(state, routes);
    renderGraph(routes, traces, tracesError);
    renderOptimizer(state);
    renderTransitions(state);
    setTimeout(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value.trim();
      try {
        window.sessionStorage.setItem(TOKEN_KEY, token);
      } catch (e) {
        // A tab without storage keeps the token in memory only.
      }
      showStatus("connecting…", "warn");
      poll();
    });
    setInterval(tick, 250);
    poll();
  });
})();
