// Live updates from the event stream (the session cookie authenticates it: EventSource sends
// no headers). A lost connection shows the banner; the browser reconnects with the last
// event id, and the stream resumes after it. Paused while the tab is hidden.
const banner = () => document.getElementById("banner");
let source = null;
let listeners = new Set();
let wanted = false;

function open() {
  if (source || document.hidden || !wanted) return;
  source = new EventSource("/api/v1/events");
  source.onopen = () => { banner().hidden = true; };
  source.onerror = () => { banner().hidden = false; };
  source.onmessage = (message) => dispatch(message);
  for (const name of ["submitted", "started", "succeeded", "failed", "cancelled", "retried",
    "attempt_failed", "queue_paused", "queue_resumed", "breaker_opened", "breaker_closed"]) {
    source.addEventListener(name, dispatch);
  }
}

function close() {
  if (source) source.close();
  source = null;
}

function dispatch(message) {
  let event;
  try { event = JSON.parse(message.data); } catch { return; }
  for (const listener of listeners) listener(event);
}

document.addEventListener("visibilitychange", () => (document.hidden ? close() : open()));

export function start() {
  wanted = true;
  open();
}

export function stop() {
  wanted = false;
  close();
  banner().hidden = true;
}

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
