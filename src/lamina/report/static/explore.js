/* lamina report: the interactive profile, the token view and the comparison chart.
   Plain script, no library, no network: it reads the JSON in #lamina-data and draws
   SVG and spans into the page. Every number is also in the page's tables and in
   results.json; without JavaScript the rest of the report is unchanged. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var source = document.getElementById("lamina-data");
  if (!source) { return; }
  var data = JSON.parse(source.textContent);

  function el(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function showInfo(panel, title, rows) {
    panel.textContent = "";
    var h = document.createElement("strong");
    h.textContent = title;
    panel.appendChild(h);
    var dl = document.createElement("dl");
    rows.forEach(function (row) {
      var dt = document.createElement("dt");
      dt.textContent = row[0];
      var dd = document.createElement("dd");
      dd.textContent = row[1];
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
    panel.appendChild(dl);
  }

  /* Roving focus over a list of elements: one tab stop, arrow keys move, Enter selects. */
  function roving(items, onFocus, onSelect) {
    var current = 0;
    function focusAt(k) {
      if (!items.length) { return; }
      k = Math.max(0, Math.min(items.length - 1, k));
      items[current].setAttribute("tabindex", "-1");
      current = k;
      items[k].setAttribute("tabindex", "0");
      items[k].focus();
    }
    items.forEach(function (item, k) {
      item.setAttribute("tabindex", k === 0 ? "0" : "-1");
      item.addEventListener("focus", function () {
        items[current].setAttribute("tabindex", "-1");
        current = k;
        item.setAttribute("tabindex", "0");
        onFocus(k);
      });
      item.addEventListener("mouseenter", function () { onFocus(k); });
      item.addEventListener("click", function () { if (onSelect) { onSelect(k); } });
      item.addEventListener("keydown", function (event) {
        var moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
        if (event.key in moves) { focusAt(current + moves[event.key]); }
        else if (event.key === "Home") { focusAt(0); }
        else if (event.key === "End") { focusAt(items.length - 1); }
        else if ((event.key === "Enter" || event.key === " ") && onSelect) { onSelect(k); }
        else { return; }
        event.preventDefault();
      });
    });
  }

  function niceTicks(lo, hi, count) {
    var raw = (hi - lo || 1) / count;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var norm = raw / mag;
    var step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
    var ticks = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return ticks;
  }

  /* A chart of series of points {x, y, lo, hi, sig, tip}: markers filled when significant,
     vertical bars from lo to hi, one focusable group per point. */
  function chart(container, panel, spec, onSelect) {
    var W = 720, H = 280, m = { l: 56, r: 12, t: 12, b: 42 };
    var points = [];
    spec.series.forEach(function (s, si) {
      s.points.forEach(function (p) { points.push({ p: p, s: s, si: si }); });
    });
    var xs = points.map(function (q) { return q.p.x; });
    var ys = [0];
    points.forEach(function (q) {
      [q.p.y, q.p.lo, q.p.hi].forEach(function (v) { if (v !== null && isFinite(v)) { ys.push(v); } });
    });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    var pad = (y1 - y0) * 0.06 || 0.1;
    y0 -= pad; y1 += pad;
    var dx = (x1 - x0) * 0.03;
    function X(v) { return m.l + (v - x0 + dx) / (x1 - x0 + 2 * dx) * (W - m.l - m.r); }
    function Y(v) { return m.t + (y1 - v) / (y1 - y0) * (H - m.t - m.b); }
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "group",
      "aria-label": spec.label, "class": "chart-svg" }, container);
    niceTicks(y0, y1, 5).forEach(function (t) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), "class": t === 0 ? "zero" : "grid" }, svg);
      el("text", { x: m.l - 6, y: Y(t) + 4, "class": "tick", "text-anchor": "end" }, svg)
        .textContent = +t.toPrecision(3);
    });
    spec.xTicks.forEach(function (t) {
      el("text", { x: X(t[0]), y: H - m.b + 16, "class": "tick", "text-anchor": "middle" }, svg)
        .textContent = t[1];
    });
    el("text", { x: (m.l + W - m.r) / 2, y: H - 6, "class": "axis", "text-anchor": "middle" }, svg)
      .textContent = spec.xLabel;
    el("text", { x: 14, y: (m.t + H - m.b) / 2, "class": "axis", "text-anchor": "middle",
      transform: "rotate(-90 14 " + (m.t + H - m.b) / 2 + ")" }, svg).textContent = spec.yLabel;
    spec.series.forEach(function (s) {
      if (s.points.length > 1) {
        el("polyline", { points: s.points.map(function (p) { return X(p.x) + "," + Y(p.y); }).join(" "),
          stroke: s.color, "class": "trace" }, svg);
      }
    });
    var width = points.length > 1 ? (W - m.l - m.r) / (spec.series[0].points.length + 1) : 20;
    var groups = points.map(function (q) {
      var g = el("g", { "class": "pt", role: "button", "aria-label": q.p.name }, svg);
      if (spec.columns) {
        el("rect", { x: X(q.p.x) - width / 2, y: m.t, width: width, height: H - m.t - m.b,
          "class": "hit" }, g);
      } else {
        el("circle", { cx: X(q.p.x), cy: Y(q.p.y), r: 9, "class": "hit" }, g);
      }
      if (q.p.lo !== null && q.p.hi !== null) {
        el("line", { x1: X(q.p.x), x2: X(q.p.x), y1: Y(q.p.lo), y2: Y(q.p.hi), stroke: q.s.color,
          "class": "ci" }, g);
      }
      var shape = q.s.marker === "square"
        ? el("rect", { x: X(q.p.x) - 4, y: Y(q.p.y) - 4, width: 8, height: 8 }, g)
        : el("circle", { cx: X(q.p.x), cy: Y(q.p.y), r: 4.5 }, g);
      shape.setAttribute("stroke", q.s.color);
      shape.setAttribute("fill", q.p.sig ? q.s.color : "#fff");
      shape.setAttribute("class", "mark");
      return g;
    });
    roving(groups, function (k) {
      showInfo(panel, points[k].p.name, points[k].p.tip);
    }, onSelect ? function (k) {
      groups.forEach(function (g, j) { g.classList.toggle("chosen", j === k); });
      onSelect(points[k].p);
    } : null);
    return { groups: groups, points: points };
  }

  /* ---------------------------------------------------------------- token view */
  var VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
    "#35b779", "#6ece58", "#b5de2b", "#fde725"];

  function mix(a, b, t) {
    var pa = parseInt(a.slice(1), 16), pb = parseInt(b.slice(1), 16);
    var out = [16, 8, 0].map(function (shift) {
      var ca = (pa >> shift) & 255, cb = (pb >> shift) & 255;
      return Math.round(ca + (cb - ca) * t);
    });
    return "rgb(" + out.join(", ") + ")";
  }

  function viridis(t) {
    t = Math.max(0, Math.min(1, t));
    var k = Math.min(VIRIDIS.length - 2, Math.floor(t * (VIRIDIS.length - 1)));
    return mix(VIRIDIS[k], VIRIDIS[k + 1], t * (VIRIDIS.length - 1) - k);
  }

  function decodeNorms(norms) {
    return norms.data.map(function (b64) {
      var raw = atob(b64), out = new Uint16Array(raw.length / 2);
      for (var i = 0; i < out.length; i++) {
        out[i] = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
      }
      return out;
    });
  }

  function tokenView(tv, select) {
    var root = document.getElementById("tv-text");
    var info = document.getElementById("tv-info");
    var layerSel = document.getElementById("tv-layer");
    var modeSel = document.getElementById("tv-colour");
    var pageSel = document.getElementById("tv-page");
    var legend = document.getElementById("tv-legend");
    if (!root) { return null; }
    var q = decodeNorms(tv.norms);
    var state = { layer: tv.layers.indexOf(tv.layer), mode: "correct", page: 0, active: 0 };
    if (state.layer < 0) { state.layer = 0; }
    tv.layers.forEach(function (layer, j) {
      var o = document.createElement("option");
      o.value = String(j);
      o.textContent = "layer " + layer;
      layerSel.appendChild(o);
    });
    tv.pages.forEach(function (p, k) {
      var o = document.createElement("option");
      o.value = String(k);
      o.textContent = (k + 1) + " of " + tv.pages.length + " (text position " +
        tv.text_pos[p.from].toLocaleString("en") + "\u2013" + tv.text_pos[p.to - 1].toLocaleString("en") + ")";
      pageSel.appendChild(o);
    });
    layerSel.value = String(state.layer);

    function logNorm(i, j) {
      var v = q[j][i];
      return v === 65535 ? null : tv.norms.lo[j] + v * tv.norms.step[j];
    }
    function text(id) {
      var s = tv.vocab[String(id)];
      return s === undefined ? "#" + id : s;
    }
    function shown(s) { return s.replace(/\n/g, "\u21b5\n"); }
    function excluded(i) {
      for (var j = 0; j < q.length; j++) { if (q[j][i] === 65535) { return true; } }
      return false;
    }
    function fmt(v, d) { return v === null || v === undefined ? "\u2013" : v.toFixed(d); }

    function describe(i) {
      var j = state.layer, correct = tv.correct[i] === "1";
      var rows = [
        ["target", JSON.stringify(text(tv.target[i])) + " (id " + tv.target[i] + ")"],
        ["prediction", tv.pred ? JSON.stringify(text(tv.pred[i])) + " (id " + tv.pred[i] + ")"
          : (correct ? "the target" : "not stored in this table")],
        ["correct", correct ? "yes" : "no"],
        ["rank of the target", String(tv.rank[i])],
        ["log-probability", fmt(tv.logprob[i], 3) + " nats"],
        ["entropy", fmt(tv.entropy[i], 3) + " nats"],
        ["ln \u2016" + tv.site + "\u2016 at layer " + tv.layers[j], fmt(logNorm(i, j), 3)],
        ["text position", tv.text_pos[i].toLocaleString("en")]
      ];
      if (excluded(i)) { rows.push(["analysis", "excluded (a zero or non-finite norm)"]); }
      showInfo(info, "token " + (i + 1).toLocaleString("en") + " of " + tv.n_shown.toLocaleString("en"), rows);
    }

    var spans = [];
    function colour() {
      var j = state.layer, lo = tv.norms.q02[j], hi = tv.norms.q98[j];
      root.classList.toggle("by-norm", state.mode === "norm");
      spans.forEach(function (span) {
        var i = +span.dataset.i;
        if (state.mode === "norm") {
          var v = logNorm(i, j);
          var t = v === null ? null : (v - lo) / ((hi - lo) || 1);
          span.style.backgroundColor = t === null ? "#ffffff" : viridis(t);
          span.style.color = t !== null && t < 0.55 ? "#ffffff" : "#111111";
        } else {
          span.style.backgroundColor = "";
          span.style.color = "";
        }
      });
      legend.textContent = "";
      if (state.mode === "norm") {
        var bar = document.createElement("span");
        bar.className = "ramp";
        bar.style.background = "linear-gradient(to right, " +
          [0, 0.25, 0.5, 0.75, 1].map(viridis).join(", ") + ")";
        legend.appendChild(document.createTextNode(fmt(lo, 2) + " "));
        legend.appendChild(bar);
        legend.appendChild(document.createTextNode(" " + fmt(hi, 2) + "  ln \u2016" + tv.site +
          "\u2016 at layer " + tv.layers[j] + " (2nd\u201398th percentile of all tokens)"));
      } else {
        [["c1", " correct "], ["c0", " incorrect"]].forEach(function (item) {
          var sw = document.createElement("span");
          sw.className = "sw " + item[0];
          legend.appendChild(sw);
          legend.appendChild(document.createTextNode(item[1]));
        });
      }
    }

    function render() {
      var page = tv.pages[state.page];
      root.textContent = "";
      spans = [];
      var ctx = document.createElement("span");
      ctx.className = "ctx";
      ctx.textContent = shown(text(page.context));
      root.appendChild(ctx);
      for (var i = page.from; i < page.to; i++) {
        var span = document.createElement("span");
        span.className = "tok " + (tv.correct[i] === "1" ? "c1" : "c0");
        span.dataset.i = String(i);
        span.setAttribute("tabindex", i === page.from ? "0" : "-1");
        span.textContent = shown(text(tv.target[i]));
        root.appendChild(span);
        spans.push(span);
      }
      state.active = 0;
      colour();
    }

    function focusToken(k) {
      k = Math.max(0, Math.min(spans.length - 1, k));
      spans[state.active].setAttribute("tabindex", "-1");
      state.active = k;
      spans[k].setAttribute("tabindex", "0");
      spans[k].focus();
    }

    root.addEventListener("mouseover", function (event) {
      var t = event.target;
      if (t.classList && t.classList.contains("tok")) { describe(+t.dataset.i); }
    });
    root.addEventListener("focusin", function (event) {
      var t = event.target;
      if (!t.classList || !t.classList.contains("tok")) { return; }
      var k = spans.indexOf(t);
      if (k >= 0 && k !== state.active) {
        spans[state.active].setAttribute("tabindex", "-1");
        state.active = k;
        t.setAttribute("tabindex", "0");
      }
      describe(+t.dataset.i);
    });
    root.addEventListener("keydown", function (event) {
      var moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 20, ArrowUp: -20 };
      if (event.key in moves) { focusToken(state.active + moves[event.key]); }
      else if (event.key === "Home") { focusToken(0); }
      else if (event.key === "End") { focusToken(spans.length - 1); }
      else { return; }
      event.preventDefault();
    });
    layerSel.addEventListener("change", function () {
      state.layer = +layerSel.value;
      state.mode = "norm";
      modeSel.value = "norm";
      colour();
      if (spans.length) { describe(+spans[state.active].dataset.i); }
    });
    modeSel.addEventListener("change", function () { state.mode = modeSel.value; colour(); });
    pageSel.addEventListener("change", function () { state.page = +pageSel.value; render(); });
    render();
    return {
      selectLayer: function (layer) {
        var j = tv.layers.indexOf(layer);
        if (j < 0) { return; }
        layerSel.value = String(j);
        layerSel.dispatchEvent(new Event("change"));
      }
    };
  }

  /* ---------------------------------------------------------------- wiring */
  var tokens = data.tokens && data.tokens.available ? tokenView(data.tokens) : null;
  document.querySelectorAll("[data-chart]").forEach(function (container) {
    var spec = data.charts[container.dataset.chart];
    var panel = document.getElementById(container.dataset.info);
    var onSelect = spec.selects && tokens ? function (p) {
      tokens.selectLayer(p.layer);
      var status = document.getElementById("lp-status");
      if (status) { status.textContent = "tokens coloured by their log-norm at layer " + p.layer; }
    } : null;
    chart(container, panel, spec, onSelect);
  });
}());
