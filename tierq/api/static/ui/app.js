// The shell: sign-in, navigation, the router (the URL holds the page and its filters), theme.
import { ApiError, get, post, call, setCsrf } from "./api.js";
import { h } from "./dom.js";
import * as live from "./live.js";
import * as pages from "./pages.js";
import * as ops from "./ops.js";

const main = document.getElementById("main");
const PAGES = [
  ["overview", "Overview", pages.overview, "tasks:read"],
  ["tasks", "Tasks", pages.tasks, "tasks:read"],
  ["dead", "Dead letters", pages.deadLetters, "tasks:read"],
  ["queues", "Queues", ops.queues, "tasks:read"],
  ["schedules", "Schedules", ops.schedules, "schedules:read"],
  ["breakers", "Breakers", ops.breakers, "tasks:read"],
  ["workers", "Workers", ops.workers, "tasks:read"],
  ["audit", "Audit log", ops.audit, "audit:read"],
];
export const session = { permissions: new Set(), required: false };
let leave = null; // the current page's clean-up

export function can(permission) {
  return session.permissions.has(permission);
}

function route() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, arg] = path.split("/");
  return { name: name || "overview", arg, params: new URLSearchParams(search || "") };
}

export function navigate(name, params = {}) {
  const search = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  const text = search.toString();
  location.hash = `#/${name}${text ? `?${text}` : ""}`;
}

async function render() {
  if (leave) leave();
  leave = null;
  const { name, arg, params } = route();
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === name);
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
  }
  const page = name === "task" ? pages.task : (PAGES.find((p) => p[0] === name) || PAGES[0])[2];
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    leave = (await page(main, { arg, params })) || null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signIn();
    main.replaceChildren(h("p", { class: "alert" }, `Could not load this page: ${error.message}`));
  }
}

function shell() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(
    ...PAGES.filter((p) => can(p[3])).map(([id, title]) =>
      h("a", { href: `#/${id}`, dataset: { page: id } }, title)),
  );
  const who = session.signed_in ? `${session.role} · ${session.tenant}` : "local operator";
  document.getElementById("who").textContent = who;
  document.getElementById("signout").hidden = !session.signed_in;
}

function signIn(message = "") {
  live.stop();
  document.getElementById("nav").replaceChildren();
  const key = h("input", { type: "password", name: "api_key", autocomplete: "off", placeholder: "tq_live_…" });
  const token = h("textarea", { name: "token", rows: 3, placeholder: "or a JWT" });
  const error = h("p", { class: "alert", hidden: !message }, message);
  const form = h(
    "form",
    { class: "signin", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const body = key.value ? { api_key: key.value.trim() } : { token: token.value.trim() };
        await post("/ui/session", body);
        await start();
      } catch (failure) {
        error.hidden = false;
        error.textContent = failure.status === 401 ? "That credential was refused." : failure.message;
      }
    } },
    h("h1", {}, "Sign in to tierq"),
    h("label", {}, "API key", key),
    h("label", {}, "JWT", token),
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  main.replaceChildren(form);
  key.focus();
}

async function start() {
  const who = await get("/ui/session");
  Object.assign(session, who, { permissions: new Set(who.permissions) });
  setCsrf(who.csrf);
  if (!who.signed_in && who.required) return signIn();
  shell();
  live.start();
  await render();
}

function theme() {
  const saved = localStorage.getItem("tierq-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  document.getElementById("theme").addEventListener("click", () => {
    const dark = getComputedStyle(document.documentElement).getPropertyValue("--bg").trim() !== "#ffffff";
    const next = dark ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("tierq-theme", next);
  });
}

document.getElementById("signout").addEventListener("click", async () => {
  await call("DELETE", "/ui/session");
  session.signed_in = false;
  signIn();
});
window.addEventListener("hashchange", render);
theme();
start().catch((error) => {
  main.replaceChildren(h("p", { class: "alert" }, `Could not reach the server: ${error.message}`));
});
