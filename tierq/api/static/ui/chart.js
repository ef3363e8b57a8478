// A small SVG line chart: series of [time, value] points over a shared time axis.
const NS = "http://www.w3.org/2000/svg";

function node(name, attrs, parent) {
  const el = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (parent) parent.append(el);
  return el;
}

export function lineChart(series, { unit = "", height = 160 } = {}) {
  const width = 600;
  const pad = { left: 44, right: 8, top: 8, bottom: 18 };
  const svg = node("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const points = series.flatMap((s) => s.points);
  const times = points.map((p) => p[0]);
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const top = Math.max(1e-9, ...points.map((p) => p[1] ?? 0));
  const x = (t) => pad.left + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    node("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }, svg);
    const label = node("text", { x: 2, y: y(value) + 3 }, svg);
    label.textContent = `${formatNumber(value)}${unit}`;
  }
  if (points.length) {
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const label = node("text", { x: x(t), y: height - 4, "text-anchor": anchor }, svg);
      label.textContent = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }
  }
  for (const s of series) {
    const drawn = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (!drawn.length) continue;
    const d = drawn.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    node("path", { d: d.join(" "), fill: "none", stroke: s.color, "stroke-width": 2 }, svg);
    const last = drawn[drawn.length - 1];  // a dot on the latest value (and on a lone point)
    node("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, fill: s.color }, svg);
  }
  svg.setAttribute("aria-label", series.map((s) => s.name).join(", "));
  return svg;
}

export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    item.append(swatch, s.name);
    box.append(item);
  }
  return box;
}

export function formatNumber(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)}k`;
  if (value >= 10) return value.toFixed(0);
  if (value >= 1) return value.toFixed(1);
  return value ? value.toPrecision(2) : "0";
}
