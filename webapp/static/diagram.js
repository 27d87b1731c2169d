// BPMN diagrams drawn by templates/_diagram.html: every <div class="bpmn-canvas" data-xml-url="..." data-state="ID">
// gets a bpmn-js NavigatedViewer (global BpmnJS, static/vendor/bpmn-js/) showing the XML, with the path state
// from <script type="application/json" id="ID">: {"done": [ids], "current": [ids], "flows": [ids],
// "labels": {id: text}, "heat": {id: 0..1}, "selected": id or null, "focus": [ids]}. Unknown ids are skipped.
// A diagram too wide to read when fitted is shown around the first known "focus" element instead (drag to pan).
(function () {
  "use strict";

  function readState(div) {
    var id = div.getAttribute("data-state");
    var node = id && document.getElementById(id);
    if (!node) { return {}; }
    try { return JSON.parse(node.textContent) || {}; } catch (e) { return {}; }
  }

  function heatBucket(value) {
    return Math.max(0, Math.min(4, Math.floor(Number(value) * 5)));  // 0..0.2 -> 0, ..., 0.8..1 -> 4
  }

  function badge(text) {
    var span = document.createElement("span");
    span.className = "diagram-badge";
    span.textContent = String(text);
    return span;
  }

  function applyState(viewer, state) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var overlays = viewer.get("overlays");
    function each(ids, fn) {
      (Array.isArray(ids) ? ids : []).forEach(function (id) { if (registry.get(id)) { fn(id); } });
    }
    function mark(cls) { return function (id) { canvas.addMarker(id, cls); }; }
    each(state.done, mark("path-done"));
    each(state.flows, mark("path-flow"));
    each(state.current, mark("path-current"));
    var heat = state.heat || {};
    each(Object.keys(heat), function (id) {
      if (typeof heat[id] === "number" && isFinite(heat[id])) { canvas.addMarker(id, "heat-" + heatBucket(heat[id])); }
    });
    var labels = state.labels || {};
    each(Object.keys(labels), function (id) {
      if (labels[id] === null || labels[id] === "") { return; }
      overlays.add(id, "diagram-badge", { position: { bottom: 0, right: 0 }, scale: false, html: badge(labels[id]) });
    });
    if (state.selected && registry.get(state.selected)) {
      canvas.addMarker(state.selected, "path-selected");
    }
  }

  function focusOn(viewer, ids) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var el = null;
    (Array.isArray(ids) ? ids : []).some(function (id) { el = registry.get(id); return !!el; });
    var scale = 0.55;
    if (!el || canvas.zoom() >= scale) { return; }
    var outer = canvas.viewbox().outer;
    var w = outer.width / scale, h = outer.height / scale;
    // the element two thirds across, so that the path that led to it shows on its left
    canvas.viewbox({ x: el.x + el.width / 2 - w * 2 / 3, y: el.y + el.height / 2 - h / 2, width: w, height: h });
  }

  function showError(div, viewer) {
    if (viewer) { viewer.destroy(); }
    div.textContent = "";
    div.classList.add("bpmn-failed");
    var p = document.createElement("p");
    p.className = "diagram-error";
    p.setAttribute("role", "alert");
    p.textContent = div.getAttribute("data-error-text") || "The diagram could not be loaded.";
    div.appendChild(p);
  }

  function load(div) {
    if (div.getAttribute("data-loaded")) { return; }  // diagram.js included twice
    div.setAttribute("data-loaded", "1");
    var viewer = null;
    fetch(div.getAttribute("data-xml-url"), { credentials: "same-origin", headers: { Accept: "application/xml" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (xml) {
        viewer = new window.BpmnJS({ container: div });
        return viewer.importXML(xml);
      })
      .then(function () {
        var state = readState(div);
        viewer.get("canvas").zoom("fit-viewport");
        focusOn(viewer, state.focus);
        applyState(viewer, state);
        div.classList.add("bpmn-ready");
      })
      .catch(function (err) {
        if (window.console) { console.warn("diagram:", err); }
        showError(div, viewer);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var divs = document.querySelectorAll("div.bpmn-canvas[data-xml-url]");
    if (divs.length && typeof window.BpmnJS !== "function") {
      divs.forEach(function (div) { showError(div, null); });
      return;
    }
    divs.forEach(load);
  });
})();
