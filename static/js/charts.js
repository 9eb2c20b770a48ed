// Draws every plotly chart whose spec sits in a <script type="application/json"> element.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var spec = document.getElementById(el.dataset.chart);
    if (!spec || typeof Plotly === "undefined") { return; }
    var fig = JSON.parse(spec.textContent);
    Plotly.newPlot(el, fig.data, fig.layout || {}, { displayModeBar: false, responsive: true });
  });
});
