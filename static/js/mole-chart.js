// The mole page's line chart: malignant probability of each analysed photo, with the risk
// thresholds of the current model as dashed lines. The x axis is time (days since the first
// photo), so photos a week apart sit closer than photos a year apart; its ticks are the photos'
// own dates, as the server wrote them. Photos all taken at one moment (two shots in a row) have
// no time between them to show: they are spaced evenly in the order taken instead, since a time
// axis of no length would draw nothing.
(function () {
  "use strict";
  var canvas = document.getElementById("mole-chart");
  var source = document.getElementById("mole-chart-data");
  if (!canvas || !source || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  var colours = { low: "#198754", medium: "#e0a800", high: "#dc3545" };
  var pointColours = data.risks.map(function (risk) { return colours[risk] || "#6c757d"; });
  var xs = data.days[data.days.length - 1] > data.days[0]
    ? data.days
    : data.days.map(function (day, i) { return i; });
  var first = xs[0];
  var last = xs[xs.length - 1];
  function dateOf(x) {
    var i = xs.indexOf(x);
    return i < 0 ? "" : data.labels[i];
  }
  // The photos' dates for the ticks, leaving out those that would overlap the one before (on a
  // phone, photos weeks apart): about 7 pixels a character. The first and the latest always show.
  function tickPositions() {
    var span = last - first;
    var widest = Math.max.apply(null, data.labels.map(function (label) { return label.length; }));
    var minGap = span * (widest * 7 + 12) / Math.max(canvas.clientWidth - 60, 1);
    var kept = [];
    xs.forEach(function (x) {
      if (!kept.length || x - kept[kept.length - 1] >= minGap) kept.push(x);
    });
    if (kept[kept.length - 1] !== last) {
      if (kept.length > 1 && last - kept[kept.length - 1] < minGap) kept.pop();
      if (kept.length === 1 && last - first < minGap) return kept;
      kept.push(last);
    }
    return kept;
  }
  var datasets = [{
    label: "Malignant probability",
    data: data.values.map(function (value, i) { return { x: xs[i], y: value }; }),
    borderColor: "#0b5ed7",
    // the legend's key takes the dataset's colour: the line's, not the first point's risk colour
    backgroundColor: "#0b5ed7",
    pointBackgroundColor: pointColours,
    pointBorderColor: "#fff",
    pointRadius: 6,
    pointHoverRadius: 8,
    clip: false,
    tension: 0  // straight lines: a curve would show values between photos that nobody measured
  }];
  // a band's line in the colour of its points
  [["medium", "Medium risk from"], ["high", "High risk from"]].forEach(function (band) {
    var value = data.thresholds && data.thresholds[band[0]];
    if (typeof value !== "number") return;
    datasets.push({
      label: band[1] + " " + value.toFixed(1) + "%",  // "8.0%", as the pages write it
      data: [{ x: first, y: value }, { x: last, y: value }],
      borderColor: colours[band[0]],
      backgroundColor: colours[band[0]],
      borderDash: [6, 4],
      borderWidth: 1.5,
      pointRadius: 0,
      pointHitRadius: 0,
      fill: false
    });
  });
  new window.Chart(canvas, {
    type: "line",
    data: { datasets: datasets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: window.matchMedia("(prefers-reduced-motion: reduce)").matches ? false : { duration: 400 },
      scales: {
        x: {
          type: "linear",
          min: first,
          max: last,
          afterBuildTicks: function (axis) { axis.ticks = tickPositions().map(function (day) { return { value: day }; }); },
          ticks: { callback: dateOf, maxRotation: 0 }
        },
        y: { min: 0, max: 100, ticks: { callback: function (v) { return v + "%"; } } }
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 14 } },
        tooltip: { callbacks: {
          title: function (items) { return items.length ? dateOf(items[0].parsed.x) : ""; },
          label: function (ctx) { return ctx.dataset.label + ": " + ctx.parsed.y.toFixed(1) + "%"; }
        } }
      }
    }
  });
})();
