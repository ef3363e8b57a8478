// Renders the OpenAPI document the server generates (no third-party code, no CDN).
const main = document.getElementById("operations");
const filter = document.getElementById("filter");
let spec = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function resolve(schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return [name, spec.components.schemas[name] || {}];
  }
  return [null, schema || {}];
}

function typeName(schema) {
  const [name, s] = resolve(schema);
  if (name) return name;
  if (s.anyOf) return s.anyOf.map(typeName).join(" | ");
  if (s.type === "array") return `array of ${typeName(s.items)}`;
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.type) return s.type;
  return "any JSON";
}

function schemaTree(schema, depth = 0, seen = new Set()) {
  const [name, s] = resolve(schema);
  const target = s.type === "array" ? resolve(s.items)[1] : s;
  if (!target.properties || depth > 4 || (name && seen.has(name))) return null;
  const inner = new Set(seen);
  if (name) inner.add(name);
  const required = new Set(target.required || []);
  const list = el("ul", { class: "schema" });
  for (const [field, fieldSchema] of Object.entries(target.properties)) {
    const limits = ["minimum", "maximum", "maxLength", "pattern", "default"]
      .filter((k) => fieldSchema[k] !== undefined)
      .map((k) => `${k} ${JSON.stringify(fieldSchema[k])}`)
      .join(", ");
    const nested = fieldSchema.anyOf
      ? fieldSchema.anyOf.map((o) => schemaTree(o, depth + 1, inner)).find((t) => t)
      : schemaTree(fieldSchema, depth + 1, inner);
    list.append(el("li", {},
      el("code", {}, field), required.has(field) ? el("span", { class: "req" }, " *") : null,
      " ", el("span", { class: "type" }, typeName(fieldSchema)),
      limits ? el("span", { class: "type" }, ` (${limits})`) : null,
      fieldSchema.description ? ` — ${fieldSchema.description}` : null,
      nested));
  }
  return list;
}

function operationView(path, method, op) {
  const body = el("div");
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
      el("th", {}, "type"), el("th", {}, "description")));
    for (const p of op.parameters) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name), p.required ? " *" : ""),
        el("td", {}, p.in), el("td", { class: "type" }, typeName(p.schema)),
        el("td", {}, p.description || "")));
    }
    body.append(el("h4", {}, "Parameters"), table);
  }
  if (op.requestBody) {
    const schema = op.requestBody.content["application/json"].schema;
    body.append(el("h4", {}, `Body: ${typeName(schema)}`, op.requestBody.required ? "" : " (optional)"),
      schemaTree(schema));
  }
  body.append(el("h4", {}, "Answers"));
  for (const [status, answer] of Object.entries(op.responses)) {
    const content = answer.content || {};
    const json = content["application/json"];
    body.append(el("p", {}, el("strong", {}, status), " ", answer.description,
      json ? el("span", { class: "type" }, ` — ${typeName(json.schema)}`) : null));
    if (json && status !== "default") body.append(schemaTree(json.schema));
  }
  const summary = el("summary", {}, el("span", { class: `method ${method}` }, method),
    el("span", { class: "path" }, path), el("span", {}, op.summary),
    el("span", { class: "perm" }, op["x-permission"]));
  const details = el("details", { class: "op", id: op.operationId }, summary, body);
  details.dataset.search = `${method} ${path} ${op.summary}`.toLowerCase();
  return details;
}

function render() {
  const groups = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags || ["other"])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operationView(path, method, op));
    }
  }
  main.replaceChildren();
  for (const [tag, ops] of groups) main.append(el("section", {}, el("h2", {}, tag), ...ops));
}

filter.addEventListener("input", () => {
  const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
  for (const op of main.querySelectorAll("details.op")) {
    op.hidden = !words.every((w) => op.dataset.search.includes(w));
  }
});

try {
  const response = await fetch("/api/v1/openapi.json", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  spec = await response.json();
  document.getElementById("version").textContent = spec.info.version;
  render();
  if (location.hash) document.getElementById(location.hash.slice(1))?.setAttribute("open", "");
} catch (error) {
  main.replaceChildren(el("p", {}, `Could not load the API description: ${error.message}`));
}
