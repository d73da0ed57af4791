// Line charts as inline SVG from the page's embedded JSON (no dependencies, no CDN).
(function () {
  var node = document.getElementById("chart-data");
  if (!node) return;
  var rows = JSON.parse(node.textContent).covenants;
  var NS = "http://www.w3.org/2000/svg", colours = ["#1565c0", "#c62828"];
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var keys = svg.dataset.series.split(","), W = 460, H = 220, L = 60, B = 30, T = 24;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var values = [];
    rows.forEach(function (r) { keys.forEach(function (k) { if (r[k] != null) values.push(+r[k]); }); });
    if (!values.length) return;
    var lo = Math.min(0, Math.min.apply(null, values)), hi = Math.max.apply(null, values) || 1;
    var x = function (i) { return L + (W - L - 10) * (rows.length > 1 ? i / (rows.length - 1) : 0.5); };
    var y = function (v) { return H - B - (H - B - T) * (v - lo) / (hi - lo); };
    svg.appendChild(el("text", {x: L, y: 16, "font-size": 12}, svg.dataset.title));
    svg.appendChild(el("line", {x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: "#999"}));
    svg.appendChild(el("text", {x: 4, y: y(hi) + 4, "font-size": 10}, Math.round(hi).toLocaleString()));
    svg.appendChild(el("text", {x: 4, y: y(lo), "font-size": 10}, Math.round(lo).toLocaleString()));
    rows.forEach(function (r, i) {
      svg.appendChild(el("text", {x: x(i) - 4, y: H - 12, "font-size": 10}, r.period));
    });
    keys.forEach(function (k, j) {
      var pts = rows.map(function (r, i) { return r[k] == null ? null : x(i) + "," + y(+r[k]); })
        .filter(Boolean).join(" ");
      svg.appendChild(el("polyline", {points: pts, fill: "none", stroke: colours[j], "stroke-width": 2,
        "stroke-dasharray": j ? "5,3" : "", "class": "series-" + k}));
      svg.appendChild(el("text", {x: W - 120, y: 16 + 12 * j, "font-size": 10, fill: colours[j]}, k));
    });
  });
})();
