// Queues, schedules, breakers, replicas, the audit log.
import { get, post, query } from "./api.js";
import { can } from "./app.js";
import { fill, h, table, taskLink, time } from "./dom.js";
import { subscribe } from "./live.js";


export async function queues(main) {
  const { items } = await get("/api/v1/queues");
  const admin = can("flow:admin");
  const toggle = (q) => h("button", { type: "button", class: q.paused ? "primary" : "danger",
    dataset: { queue: q.name }, onclick: async () => {
      await post(`/api/v1/queues/${encodeURIComponent(q.name)}/${q.paused ? "resume" : "pause"}`);
      await queues(main);
    } }, q.paused ? "Resume" : "Pause");
  fill(main,
    h("h1", {}, "Queues"),
    table([
      { title: "queue", cell: (q) => h("a", { href: `#/tasks?queue=${encodeURIComponent(q.name)}` }, q.name) },
      { title: "queued", cell: (q) => (q.counts.queued || 0).toLocaleString() },
      { title: "scheduled", cell: (q) => (q.counts.scheduled || 0).toLocaleString(), cls: "hide-small" },
      { title: "running", cell: (q) => q.running },
      { title: "failed", cell: (q) => (q.counts.failed || 0).toLocaleString() },
      { title: "done / min", cell: (q) => q.finished_last_minute },
      { title: "oldest due", cell: (q) => (q.oldest_pending_age_seconds == null ? "—" : `${q.oldest_pending_age_seconds.toFixed(0)} s`) },
      { title: "limits", cell: (q) => [q.limits.max_running ? `≤ ${q.limits.max_running} running` : "",
        q.limits.rate ? `${q.limits.rate.limit} / ${q.limits.rate.per_seconds} s` : ""].filter(Boolean).join(", ") || "—" },
      { title: "state", cell: (q) => (q.paused ? h("strong", { class: "s-failed" }, "paused") : "running") },
      ...(admin ? [{ title: "", cell: toggle }] : []),
    ], items, "No queues yet: a queue appears with its first task."),
  );
  return subscribe((e) => { if (e.event === "queue_paused" || e.event === "queue_resumed") queues(main); });
}

export async function schedules(main) {
  const page = await get("/api/v1/schedules?size=500");
  const write = can("schedules:write");
  const act = (s, action) => h("button", { type: "button", onclick: async () => {
    await post(`/api/v1/schedules/${s.id}/${action}`); await schedules(main);
  } }, action);
  fill(main,
    h("h1", {}, "Schedules"),
    write ? scheduleForm(() => schedules(main)) : null,
    table([
      { title: "name", cell: (s) => s.name },
      { title: "when", cell: (s) => s.cron ? h("code", {}, s.cron) : `every ${s.every_seconds} s` },
      { title: "zone", cell: (s) => s.timezone, cls: "hide-small" },
      { title: "state", cell: (s) => h("span", { class: `status s-${s.paused ? "cancelled" : "succeeded"}` }, s.state) },
      { title: "next run", cell: (s) => (s.next_runs[0] ? time(s.next_runs[0].utc) : "—") },
      { title: "last run", cell: (s) => (s.last_run ? [time(s.last_run.tick), " ", s.last_run.task_id ? taskLink(s.last_run.task_id) : s.last_run.reason || ""] : "—") },
      { title: "runs", cell: (s) => s.runs },
      { title: "tasks", cell: (s) => h("a", { href: `#/tasks?schedule_id=${s.id}` }, "tasks") },
      ...(write ? [{ title: "", cell: (s) => h("div", { class: "actions" }, act(s, s.paused ? "resume" : "pause"), act(s, "trigger")) }] : []),
    ], page.items, "No schedules. Create one with POST /api/v1/schedules or tierq schedules create."),
  );
  return null;
}

function scheduleForm(done) {
  const field = (name, attrs = {}) => h("input", { name, ...attrs });
  const name = field("name", { required: true, size: 16, placeholder: "nightly-report" });
  const cron = field("cron", { size: 16, placeholder: "30 2 * * *" });
  const every = field("every_seconds", { size: 8, type: "number", min: 1, placeholder: "or seconds" });
  const zone = field("timezone", { size: 14, value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" });
  const type = field("type", { required: true, size: 10, value: "noop" });
  const queue = field("queue", { size: 10, value: "default" });
  const payload = h("textarea", { name: "payload", rows: 2, cols: 30 }, "{}");
  const preview = h("div", { id: "preview", class: "muted", "aria-live": "polite" }, "Next fire times appear here.");
  const message = h("p", { role: "status" });
  let timer = null;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!cron.value.trim() && !every.value) { preview.replaceChildren("Next fire times appear here."); return; }
      try {
        const answer = await get(`/api/v1/schedules/preview${query({
          cron: cron.value.trim(), every_seconds: every.value, timezone: zone.value.trim(), count: 5 })}`);
        preview.replaceChildren(h("strong", {}, "Next: "),
          h("ol", {}, answer.next_runs.map((r) => h("li", {}, h("time", { datetime: r.utc, title: `${r.utc} (UTC)` }, r.at)))));
      } catch (error) {
        preview.replaceChildren(h("span", { class: "s-failed" }, error.message));
      }
    }, 300);
  };
  for (const input of [cron, every, zone]) input.addEventListener("input", refresh);
  return h("details", { class: "create" }, h("summary", {}, "New schedule"),
    h("form", { class: "filters", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const spec = { name: name.value.trim(), timezone: zone.value.trim(),
          task: { type: type.value.trim(), queue: queue.value.trim() || "default", payload: JSON.parse(payload.value || "{}") } };
        if (cron.value.trim()) spec.cron = cron.value.trim();
        else spec.every_seconds = Number(every.value);
        await post("/api/v1/schedules", spec);
        done();
      } catch (error) {
        message.textContent = `Not created: ${error.message}`;
      }
    } },
    h("label", {}, "name", name), h("label", {}, "cron", cron), h("label", {}, "every (s)", every),
    h("label", {}, "time zone", zone), h("label", {}, "task type", type), h("label", {}, "queue", queue),
    h("label", {}, "payload (JSON)", payload), h("button", { type: "submit", class: "primary" }, "Create")),
    preview, message);
}

export async function breakers(main) {
  const data = await get("/api/v1/breakers");
  const admin = can("flow:admin");
  fill(main,
    h("h1", {}, "Circuit breakers"),
    data.enabled ? null : h("p", { class: "alert" }, "Circuit breakers are off on this server (TIERQ_BREAKERS)."),
    table([
      { title: "breaker", cell: (b) => h("code", {}, b.key) },
      { title: "state", cell: (b) => h("span", { class: `status s-${b.state === "closed" ? "succeeded" : "failed"}` }, b.state) },
      { title: "calls / failures", cell: (b) => `${b.window_calls} / ${b.window_failures}` },
      { title: "trips", cell: (b) => b.trips },
      { title: "opened", cell: (b) => time(b.opened_at) },
      { title: "next probe", cell: (b) => time(b.next_probe_at) },
      ...(admin ? [{ title: "", cell: (b) => h("div", { class: "actions" },
        h("button", { type: "button", onclick: async () => { await post(`/api/v1/breakers/${encodeURIComponent(b.key)}/reset`); await breakers(main); } }, "Reset"),
        h("button", { type: "button", class: "danger", onclick: async () => { await post(`/api/v1/breakers/${encodeURIComponent(b.key)}/open`); await breakers(main); } }, "Open")) }] : []),
    ], data.items, "Every breaker is closed: none has seen failures."),
  );
  return subscribe((e) => { if (e.event.startsWith("breaker_")) breakers(main); });
}

export async function workers(main) {
  const data = await get("/health/workers");
  const now = Date.now() / 1000;
  fill(main,
    h("h1", {}, "Replicas and workers"),
    h("p", {}, `This replica (${data.node}): ${data.busy} of ${data.workers} workers busy.`),
    table([
      { title: "replica", cell: (r) => r.node },
      { title: "heartbeat age", cell: (r) => `${Math.max(0, now - r.last_heartbeat).toFixed(1)} s` },
      { title: "lease expires in", cell: (r) => `${Math.max(0, r.expires_at - now).toFixed(1)} s` },
      { title: "leased", cell: (r) => r.leased },
      { title: "running / workers", cell: (r) => `${r.info.running ?? "—"} / ${r.info.workers ?? "—"}` },
    ], data.replicas, "One process (embedded mode): no other replicas."),
    h("h2", {}, "Running here"),
    data.running.length ? h("ul", {}, data.running.map((id) => h("li", {}, taskLink(id)))) : h("p", { class: "muted" }, "Nothing is running."),
  );
  return null;
}

export async function audit(main, { params }) {
  const before = params.get("before") || "";
  const page = await get(`/api/v1/audit${query({ before, size: 100 })}`);
  fill(main,
    h("h1", {}, "Audit log"),
    table([
      { title: "at", cell: (r) => time(r.at) },
      { title: "actor", cell: (r) => r.actor || "—" },
      { title: "role", cell: (r) => r.role || "—", cls: "hide-small" },
      { title: "action", cell: (r) => h("code", {}, r.action) },
      { title: "resource", cell: (r) => r.resource_id || "—" },
      { title: "status", cell: (r) => r.status },
      { title: "source", cell: (r) => r.source || "—", cls: "hide-small" },
    ], page.items, "No changes recorded yet."),
    page.next_before ? h("a", { href: `#/audit?before=${page.next_before}` }, "older »") : null,
  );
  return null;
}

