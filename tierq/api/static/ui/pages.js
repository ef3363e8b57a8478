// Overview, tasks, one task, dead letters.
import { get, post, query } from "./api.js";
import { can, navigate } from "./app.js";
import { lineChart, legend } from "./chart.js";
import { confirmDialog, fill, h, json, status, table, taskLink, time } from "./dom.js";
import { subscribe } from "./live.js";

const STATES = ["pending", "scheduled", "queued", "running", "succeeded", "failed", "cancelled"];
const FILTERS = ["status", "type", "queue", "priority", "schedule_id", "name"];
const SORTS = [["created_at,desc", "newest first"], ["created_at,asc", "oldest first"],
  ["priority,desc", "priority"], ["run_at,asc", "due first"], ["updated_at,desc", "last changed"]];

function every(ms, fn) {
  const timer = setInterval(() => { if (!document.hidden) fn(); }, ms);
  return () => clearInterval(timer);
}

// Re-render a page later only if the user is still on it (never pull them back).
function later(ms, fn) {
  const here = location.hash;
  setTimeout(() => { if (location.hash === here) fn(); }, ms);
}

function debounce(ms, fn) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// ---- overview -----------------------------------------------------------------------------

export async function overview(main) {
  const counts = h("div", { class: "cards", id: "counts" });
  const depths = h("div");
  const callouts = h("div");
  const charts = h("div", { class: "grid2" });
  const replicas = h("div");
  fill(main,
    h("h1", {}, "Overview"), callouts, counts,
    h("h2", {}, "Last 15 minutes"), charts,
    h("h2", {}, "Tiers"), depths,
    h("h2", {}, "Replicas"), replicas,
  );

  async function refreshCounts() {
    const stats = await get("/api/v1/tasks/statistics");
    counts.replaceChildren(
      ...STATES.map((state) => h("a", { class: "card", href: `#/tasks?status=${state}`, dataset: { state } },
        h("div", { class: "n" }, (stats.counts[state] || 0).toLocaleString()), h("div", { class: "l" }, state))),
      h("div", { class: "card" }, h("div", { class: "n", id: "total" }, stats.total.toLocaleString()),
        h("div", { class: "l" }, "total")),
    );
    const memory = stats.memory;
    depths.replaceChildren(memory
      ? table(
        [{ title: "tier", cell: (r) => r[0] }, { title: "depth", cell: (r) => r[1] }],
        [["memory: ready", memory.ready], ["memory: delayed", memory.delayed], ["memory: running", memory.running],
          ["memory: waiting to be written", memory.unflushed],
          ...Object.entries(stats.dispatch || {}).map(([k, v]) => [`dispatch: ${k}`, v])],
      )
      : h("p", { class: "muted" }, "Tier depths are shown to platform callers."));
  }

  async function refreshSlow() {
    const [metrics, queues, breakers, workers] = await Promise.all([
      get("/health/metrics?hours=0.25&bucket_seconds=60"),
      get("/api/v1/queues"),
      get("/api/v1/breakers"),
      get("/health/workers"),
    ]);
    const at = metrics.buckets.map((b) => Date.parse(b.start));
    const series = (name, color, pick) => ({ name, color, points: metrics.buckets.map((b, i) => [at[i], pick(b)]) });
    const rates = [
      series("submitted/s", "#0969da", (b) => b.submitted / 60),
      series("succeeded/s", "#1a7f37", (b) => b.succeeded / 60),
      series("failed/s", "#cf222e", (b) => b.failed / 60),
    ];
    const latency = [
      series("wait p50", "#9a6700", (b) => b.wait_p50_seconds),
      series("wait p99", "#d4a72c", (b) => b.wait_p99_seconds),
      series("run p50", "#8250df", (b) => b.run_p50_seconds),
      series("run p99", "#c297ff", (b) => b.run_p99_seconds),
    ];
    charts.replaceChildren(
      h("div", {}, h("strong", {}, "Throughput"), lineChart(rates), legend(rates)),
      h("div", {}, h("strong", {}, "Latency (seconds)"), lineChart(latency, { unit: "s" }), legend(latency)),
    );
    const paused = queues.items.filter((q) => q.paused).map((q) => q.name);
    const open = breakers.items.filter((b) => b.state !== "closed").map((b) => `${b.key} (${b.state})`);
    fill(callouts,
      ...paused.map((name) => h("p", { class: "alert" }, "Queue ", h("a", { href: "#/queues" }, name), " is paused.")),
      ...open.map((name) => h("p", { class: "alert" }, "Circuit breaker ", h("a", { href: "#/breakers" }, name), " is not closed.")),
    );
    const now = Date.now() / 1000;
    const rows = workers.replicas.length ? workers.replicas
      : [{ node: workers.node, last_heartbeat: now, leased: "—", info: { running: workers.busy, workers: workers.workers } }];
    replicas.replaceChildren(table(
      [
        { title: "replica", cell: (r) => r.node },
        { title: "heartbeat age", cell: (r) => `${Math.max(0, now - r.last_heartbeat).toFixed(1)} s` },
        { title: "running / workers", cell: (r) => `${r.info.running ?? "—"} / ${r.info.workers ?? "—"}` },
        { title: "leased", cell: (r) => r.leased },
      ],
      rows,
    ));
  }

  await Promise.all([refreshCounts(), refreshSlow()]);
  const onEvent = debounce(500, refreshCounts);
  const stops = [every(5000, refreshCounts), every(30000, refreshSlow), subscribe(onEvent)];
  return () => stops.forEach((stop) => stop());
}

// ---- tasks --------------------------------------------------------------------------------

function filtersOf(params) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || ""]));
  for (const [key, value] of params) {
    if (key.startsWith("payload.")) filters[key] = value;  // payload.customer_id=42
  }
  return filters;
}

function payloadText(filters) {
  return Object.entries(filters).filter(([k]) => k.startsWith("payload."))
    .map(([k, v]) => `${k.slice(8)}=${v}`).join(" ");
}

function describe(filters) {
  const parts = Object.entries(filters).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(", ") : "no filter (every task)";
}

export async function tasks(main, { params }) {
  const filters = filtersOf(params);
  const after = params.get("after") || "";
  const sortBy = params.get("sort") || "created_at,desc";
  const keyset = sortBy.startsWith("created_at");
  const number = Number(params.get("page") || 0);
  const listed = { ...filters, sort: sortBy, size: 50, ...(keyset ? { after } : { page: number }) };
  const page = await get(`/api/v1/tasks${query(listed)}`);
  const selected = new Set();
  const inputs = {
    status: h("select", { name: "status" }, h("option", { value: "" }, "any"),
      STATES.map((s) => h("option", { value: s, selected: filters.status === s }, s))),
    type: h("input", { name: "type", value: filters.type, size: 10 }),
    queue: h("input", { name: "queue", value: filters.queue, size: 10 }),
    priority: h("input", { name: "priority", value: filters.priority, size: 6 }),
    schedule_id: h("input", { name: "schedule_id", value: filters.schedule_id, size: 12 }),
    name: h("input", { name: "name", value: filters.name, size: 12, placeholder: "prefix" }),
  };
  const payload = h("input", { name: "payload", value: payloadText(filters), size: 24,
    placeholder: "customer_id=42 region=eu" });
  const sort = h("select", { name: "sort" }, SORTS.map(([value, title]) =>
    h("option", { value, selected: value === sortBy }, title)));
  const lookup = h("input", { name: "id", placeholder: "task id", size: 38 });
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const chosen = Object.fromEntries(FILTERS.map((f) => [f, inputs[f].value.trim()]));
    for (const term of payload.value.trim().split(/\s+/).filter(Boolean)) {
      const [field, ...rest] = term.split("=");
      if (field && rest.length) chosen[`payload.${field}`] = rest.join("=");
    }
    if (sort.value !== "created_at,desc") chosen.sort = sort.value;
    navigate("tasks", chosen);
  } },
  ...FILTERS.map((f) => h("label", {}, f === "name" ? "name starts with" : f.replace("_", " "), inputs[f])),
  h("label", {}, "payload fields", payload),
  h("label", {}, "sort", sort),
  h("button", { type: "submit", class: "primary" }, "Filter"),
  h("a", { href: "#/tasks" }, "clear"));
  const find = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    if (lookup.value.trim()) navigate(`task/${lookup.value.trim().toLowerCase()}`);
  } }, h("label", {}, "open by id", lookup), h("button", { type: "submit" }, "Open"));

  const actions = h("div", { class: "actions" });
  const result = h("p", { class: "muted", role: "status" });
  if (can("tasks:operate")) {
    const bulk = (action) => async () => {
      // Counted exactly from the maintained counters when the filter is one state alone;
      // else the page's count, and whether there are more.
      const only = Object.entries(filters).filter(([, v]) => v);
      let howMany = `${page.items.length}${page.has_more ? " (more than this page)" : ""} now listed`;
      if (only.length === 1 && only[0][0] === "status" && !only[0][1].includes(",")) {
        const stats = await get("/api/v1/tasks/statistics");
        howMany = `${(stats.counts[only[0][1]] || 0).toLocaleString()} tasks`;
      }
      const ok = await confirmDialog(`${action} every task matching ${describe(filters)}: ${howMany}?`);
      if (!ok) return;
      const done = await post(`/api/v1/tasks/${action}${query(filters)}`);
      result.textContent = `${done.changed} tasks ${action === "cancel" ? "cancelled" : "retried"}.`;
      later(300, () => tasks(main, { params }));
    };
    const picked = (action) => async () => {
      const ids = [...selected];
      if (!ids.length) return;
      let changed = 0;
      for (const id of ids) {
        try { await post(`/api/v1/tasks/${id}/${action}`); changed += 1; } catch { /* listed below */ }
      }
      result.textContent = `${changed} of ${ids.length} selected tasks ${action === "cancel" ? "cancelled" : "retried"}.`;
    };
    actions.append(
      h("button", { type: "button", id: "cancel-selected", onclick: picked("cancel") }, "Cancel selected"),
      h("button", { type: "button", onclick: picked("retry") }, "Retry selected"),
      h("button", { type: "button", class: "danger", id: "cancel-matching", onclick: bulk("cancel") }, "Cancel matching"),
      h("button", { type: "button", id: "retry-matching", onclick: bulk("retry") }, "Retry matching"),
    );
  }
  const columns = [
    ...(can("tasks:operate") ? [{ title: "", cell: (t) => h("input", { type: "checkbox", "aria-label": `select ${t.id}`,
      onchange: (e) => (e.target.checked ? selected.add(t.id) : selected.delete(t.id)) }) }] : []),
    { title: "id", cell: (t) => taskLink(t.id) },
    { title: "type", cell: (t) => t.type },
    { title: "queue", cell: (t) => t.queue, cls: "hide-small" },
    { title: "priority", cell: (t) => t.priority, cls: "hide-small" },
    { title: "status", cell: (t) => status(t.status) },
    { title: "attempt", cell: (t) => t.attempt, cls: "hide-small" },
    { title: "created", cell: (t) => time(t.created_at) },
    { title: "name", cell: (t) => t.name || "", cls: "hide-small" },
  ];
  const here = { ...filters, ...(sortBy !== "created_at,desc" ? { sort: sortBy } : {}) };
  const pager = keyset
    ? h("div", { class: "actions" },
      after ? h("a", { href: `#/tasks${query(here)}` }, "« first page") : null,
      page.next_after ? h("a", { href: `#/tasks${query({ ...here, after: page.next_after })}`, id: "older" }, "next page »") : null)
    : h("div", { class: "actions" },
      number ? h("a", { href: `#/tasks${query({ ...here, page: number - 1 })}` }, "« previous page") : null,
      page.has_more ? h("a", { href: `#/tasks${query({ ...here, page: number + 1 })}` }, "next page »") : null);
  const list = h("div", { id: "task-list" }, table(columns, page.items,
    "No tasks match. Submit some with POST /api/v1/tasks, or clear the filters."));
  // How many match: exact from the maintained counters for no filter or one state alone (a
  // count of any other filter would walk the tasks).
  const only = Object.entries(filters).filter(([, v]) => v);
  let counted = null;
  if (!only.length || (only.length === 1 && only[0][0] === "status" && !only[0][1].includes(","))) {
    const stats = await get("/api/v1/tasks/statistics");
    const n = only.length ? (stats.counts[only[0][1]] || 0) : stats.total;
    counted = h("p", { class: "muted", id: "counted" }, `${n.toLocaleString()} ${only.length ? only[0][1] : ""} tasks`.replace("  ", " "));
  }
  const searched = page.searched == null ? null : h("p", { class: "muted", id: "searched" },
    page.search_capped
      ? `Searched the newest ${page.searched.toLocaleString()} tasks only: older ones were not looked at.`
      : `Searched all ${page.searched.toLocaleString()} tasks.`);
  fill(main, h("h1", {}, "Tasks"), form, find, actions, result, counted, searched, list, pager);
  if (after || number) return null;
  // The first page follows the stream: reloaded (debounced) when tasks change.
  const reload = debounce(800, async () => {
    const fresh = await get(`/api/v1/tasks${query({ ...filters, sort: sortBy, size: 50 })}`);
    list.replaceChildren(table(columns, fresh.items, "No tasks match."));
  });
  return subscribe(reload);
}

// ---- one task -----------------------------------------------------------------------------

export async function task(main, { arg }) {
  const id = arg;
  const [item, runs] = await Promise.all([
    get(`/api/v1/tasks/${id}`),
    get(`/api/v1/tasks/${id}/executions`),
  ]);
  const deliveries = await get(`/api/v1/tasks/${id}/notifications`).catch(() => ({ items: [] }));
  const children = await get(`/api/v1/tasks${query({ depends_on: id, size: 100, sort: "created_at,asc" })}`);
  const parents = await Promise.all(item.depends_on.map((p) => get(`/api/v1/tasks/${p}`).catch(() => ({ id: p, status: "gone" }))));
  const events = h("tbody");
  const addEvent = (e) => events.append(h("tr", {}, h("td", {}, time(e.at)), h("td", {}, e.event),
    h("td", {}, e.attempt), h("td", {}, e.node), h("td", {}, e.error || "")));
  // The newest 10,000 events (the log's scan budget for a page of 1,000): a recent task's.
  const page = await get(`/api/v1/events${query({ task_id: id, last: 10000, limit: 1000 })}`).catch(() => ({ items: [] }));
  page.items.forEach(addEvent);
  const seen = new Set(page.items.map((e) => e.cursor));

  const buttons = h("div", { class: "actions" });
  if (can("tasks:operate")) {
    if (!["succeeded", "failed", "cancelled"].includes(item.status)) {
      buttons.append(h("button", { type: "button", class: "danger", id: "cancel", onclick: async () => {
        await post(`/api/v1/tasks/${id}/cancel`); await task(main, { arg: id }); } }, "Cancel"));
    }
    if (["failed", "cancelled"].includes(item.status)) {
      buttons.append(h("button", { type: "button", class: "primary", id: "retry", onclick: async () => {
        await post(`/api/v1/tasks/${id}/retry`); await task(main, { arg: id }); } }, "Retry"));
    }
  }
  const fields = ["id", "type", "queue", "priority", "status", "attempt", "max_retries", "attempts_left",
    "timeout_seconds", "name", "description", "idempotency_key", "tenant", "lease_owner", "breaker",
    "schedule_id", "request_id"];
  const times = ["created_at", "run_at", "started_at", "finished_at", "updated_at", "scheduled_for"];
  fill(main,
    h("h1", {}, "Task ", h("span", { class: "mono" }, id), " ", status(item.status)),
    buttons,
    item.last_error && item.status !== "succeeded"
      ? h("div", { class: "alert" }, h("strong", {}, "Last error"), h("pre", { id: "last-error" }, item.last_error))
      : null,
    h("div", { class: "grid2" },
      table([{ title: "field", cell: (r) => r[0] }, { title: "value", cell: (r) => r[1] }], [
        ...fields.map((f) => [f, f === "status" ? status(item[f]) : (item[f] ?? "—")]),
        ...times.map((f) => [f, time(item[f])]),
      ]),
      h("div", {}, h("h2", {}, "Payload"), json(item.payload), h("h2", {}, "Result"), json(item.result),
        h("h2", {}, "Dependencies"), graph(parents, item, children.items, children.has_more))),
    h("h2", {}, "Attempts"),
    table([
      { title: "attempt", cell: (e) => e.attempt },
      { title: "started", cell: (e) => time(e.started_at) },
      { title: "duration", cell: (e) => (e.duration_seconds == null ? "—" : `${e.duration_seconds.toFixed(3)} s`) },
      { title: "outcome", cell: (e) => e.outcome || "running" },
      { title: "worker", cell: (e) => e.worker || "", cls: "hide-small" },
      { title: "error", cell: (e) => (e.error ? h("pre", { class: "traceback" }, e.error) : "") },
    ], runs.items, "Not started yet."),
    h("h2", {}, "Notifications"),
    table([
      { title: "channel", cell: (d) => d.channel },
      { title: "target", cell: (d) => d.target },
      { title: "event", cell: (d) => d.event },
      { title: "status", cell: (d) => d.status },
      { title: "attempts", cell: (d) => d.attempts.length },
    ], deliveries.items, "No notifications about this task."),
    h("h2", {}, "Events"),
    h("div", { class: "scroll" }, h("table", { id: "events" }, h("thead", {}, h("tr", {},
      ["at", "event", "attempt", "node", "error"].map((t) => h("th", {}, t)))), events)),
  );
  return subscribe((e) => {
    if (e.task_id !== id || seen.has(e.cursor)) return;
    seen.add(e.cursor);
    addEvent(e);
    if (["succeeded", "failed", "cancelled", "retried"].includes(e.event)) later(300, () => task(main, { arg: id }));
  });
}

// Parents -> this task -> children, each a link with its state.
function graph(parents, item, children, more) {
  const node = (t, self = false) => h("div", { class: `node${self ? " self" : ""}` },
    self ? h("span", { class: "mono" }, t.id.slice(0, 8) + "…") : taskLink(t.id), " ", status(t.status),
    t.name ? h("div", { class: "muted" }, t.name) : null);
  const column = (title, tasks, empty) => h("div", { class: "column" }, h("div", { class: "muted" }, title),
    tasks.length ? tasks.map((t) => node(t)) : h("div", { class: "muted" }, empty));
  return h("div", { class: "graph", id: "graph" },
    column("waits for", parents, "nothing"), h("div", { class: "arrow" }, "→"),
    h("div", { class: "column" }, h("div", { class: "muted" }, "this task"), node(item, true)),
    h("div", { class: "arrow" }, "→"),
    column(`then${more ? " (first 100)" : ""}`, children, "nothing waits for it"));
}

// ---- dead letters -------------------------------------------------------------------------

export async function deadLetters(main) {
  const page = await get("/api/v1/tasks?status=failed&size=1000&sort=created_at,desc");
  const groups = new Map();
  for (const t of page.items) {
    const error = (t.last_error || "").split("\n").find((line) => line.trim()) || "(no error text)";
    const key = `${t.type}\u0000${error}`;
    if (!groups.has(key)) groups.set(key, { type: t.type, error, tasks: [] });
    groups.get(key).tasks.push(t);
  }
  const result = h("p", { class: "muted", role: "status" });
  const replay = async (ids) => {
    let done = 0;
    for (const id of ids) {
      try { await post(`/api/v1/tasks/${id}/retry`); done += 1; } catch { /* already replayed */ }
    }
    result.textContent = `${done} tasks replayed.`;
    later(500, () => deadLetters(main));
  };
  const operate = can("tasks:operate");
  fill(main,
    h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, `${page.items.length}${page.has_more ? "+" : ""} failed tasks, grouped by type and error.`),
    operate && page.items.length ? h("div", { class: "actions" }, h("button", { type: "button", id: "replay-all", onclick: async () => {
      if (!(await confirmDialog("Replay every failed task?"))) return;
      const done = await post("/api/v1/tasks/retry?status=failed");
      result.textContent = `${done.changed} tasks replayed.`;
      later(500, () => deadLetters(main));
    } }, "Replay all")) : null,
    result,
    groups.size ? h("div", {}, [...groups.values()].map((g) => h("details", { class: "group", open: groups.size < 4 },
      h("summary", {}, h("strong", {}, g.type), ` — ${g.error} `, h("span", { class: "muted" }, `(${g.tasks.length})`)),
      operate ? h("div", { class: "actions" }, h("button", { type: "button", class: "replay-group",
        onclick: () => replay(g.tasks.map((t) => t.id)) }, `Replay these ${g.tasks.length}`)) : null,
      table([
        { title: "id", cell: (t) => taskLink(t.id) },
        { title: "queue", cell: (t) => t.queue },
        { title: "attempts", cell: (t) => t.attempt },
        { title: "failed at", cell: (t) => time(t.finished_at) },
        ...(operate ? [{ title: "", cell: (t) => h("button", { type: "button", class: "replay", onclick: () => replay([t.id]) }, "Replay") }] : []),
      ], g.tasks))))
      : h("p", { class: "empty" }, "No failed tasks. Tasks that run out of attempts land here."),
  );
  return null;
}
