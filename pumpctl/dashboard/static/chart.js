// Planned vs delivered volume, drawn as plain SVG (no chart library: the page must work on
// an air-gapped lab network). Lines differ by dash pattern and weight as well as colour, so
// the chart reads the same in greyscale.
"use strict";

window.PumpChart = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 340, H = 150, L = 44, R = 10, T = 10, B = 28;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function fmt(v) {
    return Math.abs(v) >= 10 || v === 0 ? v.toFixed(0) : v.toPrecision(2);
  }

  function path(points, sx, sy) {
    return points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  }

  // data: {planned: [[s, mL]], history: [[s, mL]], start: bool (draw the unheard start),
  //        end: [s, mL] | null (where a run we did not hear to its end finished)}
  function draw(box, data) {
    const planned = data.planned || [];
    const history = data.history || [];
    const xs = [60, ...planned.map((p) => p[0]), ...history.map((p) => p[0])];
    const ys = [0.001, ...planned.map((p) => p[1]), ...history.map((p) => p[1])];
    if (data.end) { xs.push(data.end[0]); ys.push(data.end[1]); }
    const xMax = Math.max(...xs), yMax = Math.max(...ys) * 1.05;
    const useHours = xMax > 3 * 3600;
    const unit = useHours ? 3600 : 60;
    const sx = (s) => L + (s / xMax) * (W - L - R);
    const sy = (v) => H - B - (v / yMax) * (H - T - B);
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img",
      "aria-label": "planned and delivered volume against run time"});
    const xStep = niceStep(xMax / unit, 5), yStep = niceStep(yMax, 4);
    for (let v = 0; v <= yMax + 1e-9; v += yStep) {
      svg.append(el("line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid"}));
      svg.append(el("text", {x: L - 4, y: sy(v) + 4, class: "tick", "text-anchor": "end"}, fmt(v)));
    }
    for (let u = 0; u <= xMax / unit + 1e-9; u += xStep) {
      svg.append(el("line", {x1: sx(u * unit), x2: sx(u * unit), y1: T, y2: H - B, class: "grid"}));
      svg.append(el("text", {x: sx(u * unit), y: H - B + 14, class: "tick", "text-anchor": "middle"}, fmt(u)));
    }
    svg.append(el("text", {x: W - R, y: H - 2, class: "axis-label", "text-anchor": "end"},
      useHours ? "h" : "min"));
    svg.append(el("text", {x: 2, y: T + 4, class: "axis-label"}, "mL"));
    svg.append(el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}));
    svg.append(el("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}));
    if (planned.length > 1) {
      svg.append(el("polyline", {points: path(planned, sx, sy), class: "line-planned"}));
    }
    if (history.length && data.start && history[0][0] > 0) {
      svg.append(el("polyline", {points: path([[0, 0], history[0]], sx, sy), class: "line-unheard"}));
    }
    if (data.end && (!history.length || data.end[0] > history[history.length - 1][0])) {
      const from = history.length ? history[history.length - 1] : [0, 0];
      svg.append(el("polyline", {points: path([from, data.end], sx, sy), class: "line-unheard"}));
    }
    if (history.length > 1) {
      svg.append(el("polyline", {points: path(history, sx, sy), class: "line-delivered"}));
    }
    if (history.length) {
      const last = history[history.length - 1];
      svg.append(el("circle", {cx: sx(last[0]), cy: sy(last[1]), r: 3.5, class: "dot-delivered"}));
    }
    box.replaceChildren(svg);
  }

  return {draw};
})();
