/* Draws a workflow's steps and edges (JSON in a <script type="application/json">) with
   Cytoscape.js, laid out by its dagre extension; a run's steps are coloured by state.
   Used by the workflow, run and editor pages (ADR 0018). */
(function () {
  "use strict";
  if (window.cytoscape && window.cytoscapeDagre && !window.cytoscape.atpDagre) {
    window.cytoscape.use(window.cytoscapeDagre);
    window.cytoscape.atpDagre = true;
  }
  var COLOURS = {
    WAITING: "#c9ced6", SCHEDULED: "#9cc3f0", RUNNING: "#f0c24b", SUCCEEDED: "#5cb85c",
    FAILED: "#d9534f", SKIPPED: "#eceff3", CANCELED: "#6c757d", "": "#ffffff"
  };
  var STYLE = [
    {selector: "node", style: {
      "shape": "round-rectangle", "width": 130, "height": 44, "label": "data(label)",
      "text-wrap": "wrap", "text-valign": "center", "text-halign": "center", "font-size": 12,
      "background-color": function (n) { return COLOURS[n.data("state") || ""] || "#fff"; },
      "border-width": 2, "border-color": "#1d2329"}},
    {selector: "node[kind = 'signal']", style: {"shape": "diamond", "width": 120, "height": 60}},
    {selector: "node[kind = 'failure']", style: {"border-color": "#a3261f", "border-style": "dashed"}},
    {selector: "node:selected", style: {"border-color": "#1f6feb", "border-width": 4}},
    {selector: "edge", style: {
      "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2,
      "line-color": "#5b6670", "target-arrow-color": "#5b6670"}},
    {selector: "edge:selected", style: {"line-color": "#1f6feb", "target-arrow-color": "#1f6feb", "width": 4}}
  ];
  var LAYOUT = {name: "dagre", rankDir: "LR", nodeSep: 30, rankSep: 60, fit: true, padding: 20};

  function elements(data) {
    return data.nodes.map(function (n) { return {group: "nodes", data: n}; })
      .concat(data.edges.map(function (e) { return {group: "edges", data: e}; }));
  }

  function draw(container, data, options) {
    var cy = window.cytoscape(Object.assign({
      container: container, elements: elements(data), style: STYLE, layout: LAYOUT,
      minZoom: 0.3, maxZoom: 1.3, autoungrabify: true
    }, options || {}));
    container.atpGraph = cy;
    return cy;
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-graph]").forEach(function (el) {
      if (el.atpGraph) { return; }
      var source = document.getElementById(el.dataset.graph);
      if (source) { draw(el, JSON.parse(source.textContent)); }
    });
  }

  window.atpGraph = {draw: draw, style: STYLE, layout: LAYOUT, colours: COLOURS};
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (e) { drawAll(e.target); });
})();
