"""The inline CSS and JavaScript of the flame graph SVG (zoom, search, hover details).

The script reads everything it needs from the document: each frame is a ``<g>``
whose ``<title>`` is "name (value, P%)" and whose ``<rect>`` carries ``data-x`` (the
frame's offset from the left edge) and ``data-v`` (its value), both in profile units,
so zooming is exact integer arithmetic. ``#frames`` carries the layout constants.
"""

from __future__ import annotations

CSS = """\
text { font-family: Verdana, "DejaVu Sans", sans-serif; font-size: 12px; fill: rgb(0,0,0); }
#title { font-size: 17px; text-anchor: middle; }
#subtitle { text-anchor: middle; fill: rgb(90,90,90); }
#matched { text-anchor: end; }
.btn { cursor: pointer; fill: rgb(40,40,160); }
.btn:hover { text-decoration: underline; }
.hide { display: none; }
#frames g { cursor: pointer; }
#frames g:hover rect { stroke: rgb(0,0,0); stroke-width: 0.5; }
#frames text { pointer-events: none; }
#frames g.faded rect { opacity: 0.5; }
"""

# Kept free of "]]>" so it can sit in a CDATA section.
SCRIPT = """\
"use strict";
(function () {
  var frames = document.getElementById("frames");
  if (!frames) { return; }
  var details = document.getElementById("details");
  var matched = document.getElementById("matched");
  var unzoomBtn = document.getElementById("unzoom");
  var searchBtn = document.getElementById("search");
  var total = +frames.getAttribute("data-total");
  var xpad = +frames.getAttribute("data-xpad");
  var usable = +frames.getAttribute("data-usable");
  var charWidth = +frames.getAttribute("data-char-width");
  var highlight = "rgb(230,0,230)";
  var groups = Array.prototype.slice.call(frames.getElementsByTagName("g"));
  var searchTerm = null;

  function rectOf(g) { return g.getElementsByTagName("rect")[0]; }
  function titleOf(g) { return g.getElementsByTagName("title")[0].textContent; }
  // The title is "name (value, P%)": strip the last parenthesised group.
  function nameOf(g) { return titleOf(g).replace(/ \\([^()]*\\)$/, ""); }
  function num(el, attr) { return +el.getAttribute(attr); }

  function place(g, x, w) {
    var r = rectOf(g);
    var t = g.getElementsByTagName("text")[0];
    r.setAttribute("x", x.toFixed(2));
    r.setAttribute("width", w.toFixed(2));
    t.setAttribute("x", (x + 3).toFixed(2));
    var fit = Math.floor(w / charWidth);
    var name = nameOf(g);
    t.textContent = fit < 3 ? "" : name.length <= fit ? name : name.slice(0, fit - 2) + "..";
  }

  function show(g, visible) { g.style.display = visible ? "" : "none"; }

  function zoom(target) {
    var tr = rectOf(target);
    var x0 = num(tr, "data-x"), v0 = num(tr, "data-v"), y0 = num(tr, "y");
    var scale = usable / v0;
    groups.forEach(function (g) {
      var r = rectOf(g), x = num(r, "data-x"), v = num(r, "data-v"), y = num(r, "y");
      g.classList.remove("faded");
      if (y > y0) {
        // Below the target (flame: root at the bottom): keep its ancestors, faded.
        var ancestor = x <= x0 && x + v >= x0 + v0;
        show(g, ancestor);
        if (ancestor) { g.classList.add("faded"); place(g, xpad, usable); }
      } else if (x >= x0 && x + v <= x0 + v0) {
        show(g, true);
        place(g, xpad + (x - x0) * scale, v * scale);
      } else {
        show(g, false);
      }
    });
    unzoomBtn.classList.remove("hide");
  }

  function unzoom() {
    var scale = usable / total;
    groups.forEach(function (g) {
      var r = rectOf(g);
      g.classList.remove("faded");
      show(g, true);
      place(g, xpad + num(r, "data-x") * scale, num(r, "data-v") * scale);
    });
    unzoomBtn.classList.add("hide");
  }

  function resetSearch() {
    groups.forEach(function (g) {
      var r = rectOf(g);
      if (r.hasAttribute("data-fill")) {
        r.setAttribute("fill", r.getAttribute("data-fill"));
        r.removeAttribute("data-fill");
      }
    });
    searchTerm = null;
    matched.textContent = "";
    searchBtn.textContent = "Search";
  }

  function applySearch(re) {
    var spans = [];
    groups.forEach(function (g) {
      var r = rectOf(g);
      if (re.test(nameOf(g))) {
        if (!r.hasAttribute("data-fill")) { r.setAttribute("data-fill", r.getAttribute("fill")); }
        r.setAttribute("fill", highlight);
        spans.push([num(r, "data-x"), num(r, "data-v")]);
      }
    });
    // Frames nest, so count a match only when it is not inside an earlier (wider) one.
    spans.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
    var sum = 0, end = -1;
    spans.forEach(function (s) {
      if (s[0] >= end) { sum += s[1]; end = s[0] + s[1]; }
    });
    matched.textContent = "Matched: " + (100 * sum / total).toFixed(1) + "%";
    searchBtn.textContent = "Reset Search";
  }

  function search() {
    var term = window.prompt("Search for (regular expression):", searchTerm || "");
    if (term === null) { return; }
    resetSearch();
    if (term === "") { return; }
    var re;
    try {
      re = new RegExp(term);
    } catch (e) {
      window.alert("Invalid regular expression: " + e.message);
      return;
    }
    searchTerm = term;
    applySearch(re);
  }

  function groupOf(evt) {
    for (var el = evt.target; el && el !== frames; el = el.parentNode) {
      if (el.tagName === "g") { return el; }
    }
    return null;
  }

  frames.addEventListener("click", function (evt) {
    var g = groupOf(evt);
    if (g) { zoom(g); }
  });
  frames.addEventListener("mouseover", function (evt) {
    var g = groupOf(evt);
    if (g) { details.textContent = titleOf(g); }
  });
  frames.addEventListener("mouseout", function () { details.textContent = ""; });
  unzoomBtn.addEventListener("click", unzoom);
  searchBtn.addEventListener("click", function () {
    if (searchTerm === null) { search(); } else { resetSearch(); }
  });
  window.addEventListener("keydown", function (evt) {
    if ((evt.ctrlKey || evt.metaKey) && (evt.key === "f" || evt.key === "F")) {
      evt.preventDefault();
      search();
    } else if (evt.key === "Escape") {
      resetSearch();
    }
  });
})();
"""
