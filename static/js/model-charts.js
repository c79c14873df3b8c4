// The ROC curve of the "About the model" page (points from the model card).
(function () {
  "use strict";
  var canvas = document.getElementById("roc-chart");
  var source = document.getElementById("roc-data");
  if (!canvas || !source || !window.Chart) return;
  var points = JSON.parse(source.textContent).slice().sort(function (a, b) { return a.x - b.x || a.y - b.y; });
  var bands = JSON.parse((document.getElementById("roc-bands") || { textContent: "[]" }).textContent);
  var operating = bands.filter(function (b) { return b.sensitivity !== null && b.specificity !== null; }).map(function (b) {
    return {
      // "8.0%", as the page's table writes it (JSON drops the ".0")
      label: (b.band === "high" ? "High" : "Medium") + "-risk threshold ("
        + (typeof b.threshold === "number" ? b.threshold.toFixed(1) : b.threshold) + "%)",
      data: [{ x: 1 - b.specificity / 100, y: b.sensitivity / 100 }],
      backgroundColor: b.band === "high" ? "#dc3545" : "#e0a800",
      borderColor: "#fff",
      pointRadius: 7,
      pointStyle: "rectRot"
    };
  });
  new window.Chart(canvas, {
    type: "scatter",
    data: {
      datasets: [
        { label: "molesite model", data: points, showLine: true, borderColor: "#0b5ed7", backgroundColor: "#0b5ed7", pointRadius: 0, borderWidth: 2.5 },
        { label: "Chance", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], showLine: true, borderColor: "#adb5bd", borderDash: [6, 4], pointRadius: 0, borderWidth: 1.5 }
      ].concat(operating)
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: {
        x: { min: 0, max: 1, title: { display: true, text: "False positive rate (benign flagged)" } },
        y: { min: 0, max: 1, title: { display: true, text: "True positive rate (malignant caught)" } }
      },
      plugins: { legend: { position: "bottom" } }
    }
  });
})();
