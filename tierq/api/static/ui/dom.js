// Building the page: elements from data (never HTML strings), times in the browser's zone
// with UTC on hover, JSON folded when large.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const when = new Date(iso);
  return h("time", { datetime: iso, title: `${iso} (UTC)` }, when.toLocaleString());
}

export function status(value) {
  return h("span", { class: `status s-${value}` }, value);
}

export function json(value, foldOver = 2000) {
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) return h("span", { class: "muted" }, "—");
  if (text.length <= foldOver) return h("pre", {}, text);
  return h("details", {}, h("summary", {}, `${text.length.toLocaleString()} characters`), h("pre", {}, text));
}

export function table(columns, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.cls }, c.title)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.cls }, c.cell(row)))))),
    ),
  );
}

export function taskLink(id) {
  return h("a", { href: `#/task/${id}`, class: "mono" }, id.slice(0, 8) + "…");
}

export function confirmDialog(message) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      {},
      h("p", {}, message),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "primary", onclick: () => { dialog.close(); resolve(true); } }, "Confirm"),
        h("button", { type: "button", onclick: () => { dialog.close(); resolve(false); } }, "Keep"),
      ),
    );
    dialog.addEventListener("close", () => { dialog.remove(); resolve(false); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Replace an element's children, leaving out the absent ones (null, false).
export function fill(parent, ...children) {
  parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}
