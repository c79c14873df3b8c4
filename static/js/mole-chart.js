// The mole page's line chart: malignant probability of each analysed photo, with the risk
// thresholds of the current model as dashed lines.
(function () {
  "use strict";
  var canvas = document.getElementById("mole-chart");
  var source = document.getElementById("mole-chart-data");
  if (!canvas || !source || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  var colours = { low: "#198754", medium: "#e0a800", high: "#dc3545" };
  var pointColours = data.risks.map(function (risk) { return colours[risk] || "#6c757d"; });
  var datasets = [{
    label: "Malignant probability",
    data: data.values,
    borderColor: "#0b5ed7",
    backgroundColor: pointColours,
    pointBackgroundColor: pointColours,
    pointBorderColor: "#fff",
    pointRadius: 6,
    pointHoverRadius: 8,
    clip: false,
    tension: 0.2
  }];
  [["medium", "Medium risk from", "#e0a800"], ["high", "High risk from", "#dc3545"]].forEach(function (band) {
    var value = data.thresholds && data.thresholds[band[0]];
    if (typeof value !== "number") return;
    datasets.push({
      label: band[1] + " " + value + "%",
      data: data.labels.map(function () { return value; }),
      borderColor: band[2],
      backgroundColor: band[2],
      borderDash: [6, 4],
      borderWidth: 1.5,
      pointRadius: 0,
      pointHitRadius: 0,
      fill: false
    });
  });
  new window.Chart(canvas, {
    type: "line",
    data: { labels: data.labels, datasets: datasets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: window.matchMedia("(prefers-reduced-motion: reduce)").matches ? false : { duration: 400 },
      scales: {
        y: { min: 0, max: 100, ticks: { callback: function (v) { return v + "%"; } } }
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 14 } },
        tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + ctx.parsed.y + "%"; } } }
      }
    }
  });
})();
