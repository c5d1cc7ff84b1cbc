/* The visual workflow editor (ADR 0018): steps are Cytoscape.js nodes, edges are drawn by
   dragging from a step to another (cytoscape-edgehandles), layout by dagre. The definition it
   builds is the config file's `workflows:` item; the console checks it with the server's own
   checks as you go and saves it through PutWorkflow. */
(function () {
  "use strict";
  var root = document.getElementById("editor");
  var prefix = root.dataset.prefix, csrf = root.dataset.csrf;
  var FIELDS = ["name", "topic", "payload", "after", "after_any", "delay_ms", "max_retries",
                "on_failure", "signal", "timeout_ms", "when"];
  var counter = 0, checkTimer = null, connecting = false;
  if (!window.cytoscape("core", "edgehandles")) {  // the UMD build registers itself
    window.cytoscape.use(window.cytoscapeEdgehandles);
  }

  var draft = JSON.parse(document.getElementById("draft-data").textContent);
  document.getElementById("wf-name").value = draft.name || "";
  var cy = window.atpGraph.draw(document.getElementById("canvas"), fromDraft(draft),
                                {autoungrabify: false, boxSelectionEnabled: false});
  var eh = cy.edgehandles({
    canConnect: function (source, target) {
      return !source.same(target) && source.edgesTo(target).empty();
    },
    edgeParams: function () { counter += 1; return {data: {id: "e" + counter}}; },
    hoverDelay: 100, snap: true, snapThreshold: 30, snapFrequency: 30, noEdgeEventsInDraw: true,
    disableBrowserGestures: true
  });
  window.atpEditor = {cy: cy, eh: eh, draft: toDraft};

  function label(d) {
    return (d.name || "?") + (d.signal ? "\nsignal " + d.signal : "") + (d.delay_ms ? "\nwait " + d.delay_ms : "");
  }

  function fromDraft(d) {
    var nodes = [], edges = [], ids = {};
    (d.steps || []).forEach(function (step) {
      counter += 1;
      var data = Object.assign({}, step, {id: "n" + counter});
      delete data.after;
      data.label = label(data);
      data.kind = step.signal ? "signal" : step.on_failure ? "failure" : "task";
      ids[step.name] = data.id;
      nodes.push(data);
    });
    (d.steps || []).forEach(function (step) {
      (step.after || []).forEach(function (parent) {
        counter += 1;
        if (ids[parent]) { edges.push({id: "e" + counter, source: ids[parent], target: ids[step.name]}); }
      });
    });
    return {nodes: nodes, edges: edges};
  }

  function toDraft() {
    var steps = cy.nodes().not(".eh-handle, .eh-ghost").map(function (node) {
      var d = node.data(), step = {};
      FIELDS.forEach(function (f) {
        var value = f === "after" ? node.incomers("node").not(".eh-ghost").map(function (p) { return p.data("name"); }) : d[f];
        if (value === undefined || value === "" || value === false || (Array.isArray(value) && !value.length)) { return; }
        if (f === "max_retries") { value = /^\d+$/.test(String(value)) ? Number(value) : value; }
        step[f] = value;
      });
      return step;
    });
    return {name: document.getElementById("wf-name").value.trim(), steps: steps};
  }

  // -- the side panel -----------------------------------------------------------------------
  var inputs = document.querySelectorAll("#panel-step [data-field]");
  function show(which) {
    ["none", "edge", "step"].forEach(function (p) {
      document.getElementById("panel-" + p).hidden = p !== which;
    });
  }
  function selected() { return cy.$(":selected"); }
  cy.on("select unselect", function () {
    var one = selected();
    if (one.length === 1 && one.isNode()) {
      inputs.forEach(function (input) {
        var v = one.data(input.dataset.field);
        if (input.type === "checkbox") { input.checked = !!v; } else { input.value = v === undefined ? "" : v; }
      });
      show("step");
    } else if (one.length === 1 && one.isEdge()) {
      document.getElementById("edge-text").textContent =
        one.source().data("name") + " → " + one.target().data("name");
      show("edge");
    } else {
      show("none");
    }
  });
  inputs.forEach(function (input) {
    input.addEventListener("input", function () {
      var one = selected();
      if (one.length !== 1 || !one.isNode()) { return; }
      one.data(input.dataset.field, input.type === "checkbox" ? input.checked : input.value);
      one.data("label", label(one.data()));
      one.data("kind", one.data("signal") ? "signal" : one.data("on_failure") ? "failure" : "task");
      changed();
    });
  });

  // -- the toolbar ----------------------------------------------------------------------------
  function freeName() {
    var names = {}, n = 1;
    cy.nodes().forEach(function (node) { names[node.data("name")] = true; });
    while (names["step" + n]) { n += 1; }
    return "step" + n;
  }
  document.getElementById("add-step").addEventListener("click", function () {
    counter += 1;
    var count = cy.nodes().length, ext = cy.extent();
    var name = freeName(), data = {id: "n" + counter, name: name, topic: "", kind: "task"};
    data.label = label(data);
    cy.$(":selected").unselect();
    var node = cy.add({group: "nodes", data: data, position: {
      x: ext.x1 + 90 + (count % 3) * 170, y: ext.y1 + 50 + Math.floor(count / 3) % 4 * 90}});
    node.select();
    changed();
    document.getElementById("f-name").focus();
  });
  document.getElementById("connect").addEventListener("click", function (e) {
    connecting = !connecting;
    if (connecting) { eh.enableDrawMode(); } else { eh.disableDrawMode(); }
    e.target.classList.toggle("on", connecting);
    document.getElementById("canvas").classList.toggle("connecting", connecting);
  });
  document.getElementById("layout").addEventListener("click", function () {
    cy.layout(window.atpGraph.layout).run();
  });
  document.getElementById("delete").addEventListener("click", function () {
    cy.remove(selected());
    show("none");
    changed();
  });
  document.getElementById("wf-name").addEventListener("input", changed);
  cy.on("ehcomplete", function () { changed(); });

  // -- checking, saving, starting -------------------------------------------------------------
  function call(action, fields) {
    var body = new URLSearchParams(Object.assign({csrf: csrf}, fields));
    return fetch(prefix + "/editor/" + action, {method: "POST", body: body, credentials: "same-origin"})
      .then(function (reply) { return reply.json(); });
  }
  function report(result, what) {
    var out = document.getElementById("check");
    out.className = result.ok ? "ok" : "bad";
    out.textContent = result.ok ? what : result.error;
    if (result.yaml) { document.getElementById("yaml-preview").textContent = result.yaml; }
  }
  function changed() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(function () {
      call("check", {definition: JSON.stringify(toDraft())}).then(function (result) {
        report(result, "valid (checked by the server's own rules)");
      });
    }, 250);
  }
  document.getElementById("save").addEventListener("click", function () {
    clearTimeout(checkTimer);
    call("save", {definition: JSON.stringify(toDraft())}).then(function (result) {
      report(result, "saved");
      if (!result.ok) { return; }
      document.getElementById("saved").hidden = false;
      document.getElementById("saved-version").textContent = "Saved version " + result.version;
      var diff = document.getElementById("save-diff");
      diff.textContent = "";
      result.diff.forEach(function (pair) {
        var line = document.createElement("span");
        line.className = {"+": "dadd", "-": "ddel", "@": "dhunk"}[pair[0]] || "dsame";
        line.textContent = pair[1];
        diff.appendChild(line);
      });
    });
  });
  document.getElementById("start-form").addEventListener("submit", function (e) {
    e.preventDefault();
    call("start", {workflow: toDraft().name, input: document.getElementById("start-input").value})
      .then(function (result) {
        report(result, "run started");
        if (!result.ok) { return; }
        var link = document.getElementById("run-link");
        link.href = result.url;
        link.textContent = "run " + result.run_id;
        link.hidden = false;
      });
  });
  if (draft.steps && draft.steps.length) { changed(); }
})();
