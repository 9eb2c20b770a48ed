// Draws every plotly chart whose spec sits in a <script type="application/json"> element,
// on page load and in content htmx swaps in.
(function () {
  function draw(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var spec = document.getElementById(el.dataset.chart);
      if (!spec || typeof Plotly === "undefined") { return; }
      var fig = JSON.parse(spec.textContent);
      Plotly.newPlot(el, fig.data, fig.layout || {}, { displayModeBar: false, responsive: true });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.detail.target); });
})();
