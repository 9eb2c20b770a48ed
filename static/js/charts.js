// Draws every plotly chart whose spec sits in a <script type="application/json"> element,
// on page load and in content htmx swaps in.
(function () {
  function draw(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var spec = document.getElementById(el.dataset.chart);
      if (!spec || typeof Plotly === "undefined") { return; }
      var fig = JSON.parse(spec.textContent);
      Plotly.newPlot(el, fig.data, fig.layout || {}, { displayModeBar: false, responsive: true });
      // Charts whose points carry a URL in customdata open it on click (the lineage graph).
      if (el.dataset.clickable !== undefined && el.on) {
        el.on("plotly_click", function (ev) {
          var url = ev.points && ev.points[0] && ev.points[0].customdata;
          if (typeof url === "string" && url.charAt(0) === "/") { window.location.assign(url); }
        });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.detail.target); });
})();
