/* The overview's live charts (ADR 0018): uPlot, fed by polling /console/live every 5 s (the
   console samples every 5 s); nothing is fetched while the tab is hidden. */
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.uPlot) { return; }
  var select = document.getElementById("live-topic"), topic = "", every = 5000;

  function chart(id, title, names, colours) {
    var series = [{}].concat(names.map(function (name, i) {
      return {label: name, stroke: colours[i], width: 2};
    }));
    var options = {title: title, width: 540, height: 220, series: series,
                   scales: {x: {time: true}}, legend: {live: false}};
    return new window.uPlot(options, names.map(function () { return []; }).concat([[]]),
                            document.getElementById(id));
  }
  var rates = chart("chart-rates", "enqueued and acked per second",
                    ["enqueued/s", "acked/s"], ["#1f6feb", "#5cb85c"]);
  var depths = chart("chart-depths", "pending, due, running, dead",
                     ["pending", "due", "running", "dead"], ["#5b6670", "#f0a030", "#1f6feb", "#d9534f"]);
  window.atpLive = {rates: rates, depths: depths};

  function topics(names) {
    var have = Array.prototype.map.call(select.options, function (o) { return o.value; });
    names.forEach(function (name) {
      if (have.indexOf(name) < 0) { select.add(new Option(name, name)); }
    });
  }
  function refresh() {
    if (document.hidden) { return; }
    fetch(root.dataset.url + "?topic=" + encodeURIComponent(topic), {credentials: "same-origin"})
      .then(function (reply) { return reply.json(); })
      .then(function (d) {
        topics(d.topics);
        rates.setData([d.t, d.enqueued, d.acked]);
        depths.setData([d.t, d.pending, d.due, d.running, d.dead]);
        root.dataset.samples = d.t.length;
        root.dataset.topic = d.topic;
        every = d.step_s * 1000;
      });
  }
  select.addEventListener("change", function () { topic = select.value; refresh(); });
  refresh();
  (function loop() { setTimeout(function () { refresh(); loop(); }, every); })();
})();
