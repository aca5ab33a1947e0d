
(function(){
  var config = __PLOTLY_CONFIG__;
  document.querySelectorAll('script.figure-spec').forEach(function(spec){
    var fig = JSON.parse(spec.textContent), div = document.getElementById(spec.dataset.for);
    Plotly.newPlot(div, fig.data, fig.layout, config);
  });
})();
