
(function(){
  function flash(btn, text){var old=btn.dataset.label||btn.textContent;btn.dataset.label=old;btn.textContent=text;
    setTimeout(function(){btn.textContent=old;},1500);}
  function fallbackCopy(text){var ta=document.createElement('textarea');ta.value=text;ta.setAttribute('readonly','');
    ta.style.position='fixed';ta.style.opacity='0';document.body.appendChild(ta);ta.select();var ok=false;
    try{ok=document.execCommand('copy');}catch(e){ok=false;}document.body.removeChild(ta);return ok;}
  document.querySelectorAll('button.copy').forEach(function(btn){
    btn.addEventListener('click',function(){
      var text=document.getElementById(btn.dataset.target).textContent;
      function done(){flash(btn,'Copied');} function fail(){flash(btn,fallbackCopy(text)?'Copied':'Select and copy');}
      if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(text).then(done,fail);}else{fail();}
    });});
  document.querySelectorAll('.tabs').forEach(function(tabs){
    tabs.querySelectorAll('button').forEach(function(b){b.addEventListener('click',function(){
      tabs.querySelectorAll('button').forEach(function(x){x.classList.toggle('on',x===b);});
      var group=tabs.dataset.group;
      document.querySelectorAll('.panel[data-group="'+group+'"]').forEach(function(p){
        p.classList.toggle('on',p.id===b.dataset.panel);});});});});

  var table=document.getElementById('trials'); if(!table) return;
  var tbody=table.tBodies[0], rows=Array.prototype.slice.call(tbody.rows);
  var heads=Array.prototype.slice.call(table.querySelectorAll('thead tr.names th'));
  var inputs=Array.prototype.slice.call(table.querySelectorAll('thead tr.filters input'));
  var boxes=Array.prototype.slice.call(document.querySelectorAll('#state-filter input'));
  var search=document.getElementById('trial-search'), shown=document.getElementById('trials-shown');
  function cellValue(row,i){var c=row.cells[i];var v=c.getAttribute('data-v');
    if(v===null)return {num:NaN,text:c.textContent.trim().toLowerCase()};
    return {num:v===''?NaN:parseFloat(v),text:c.textContent.trim().toLowerCase()};}
  function test(expr,val){expr=expr.trim(); if(!expr)return true; var neg=false;
    if(expr[0]==='!'&&expr[1]!=='='){neg=true;expr=expr.slice(1).trim();}
    var m=/^(<=|>=|!=|<|>|=)\s*(-?\d*\.?\d+(e-?\d+)?)$/i.exec(expr), r;
    if(m){var x=parseFloat(m[2]),v=val.num; if(isNaN(v))r=false; else r={'<':v<x,'<=':v<=x,'>':v>x,'>=':v>=x,
      '=':Math.abs(v-x)<=1e-9*Math.max(1,Math.abs(x)),'!=':Math.abs(v-x)>1e-9*Math.max(1,Math.abs(x))}[m[1]];}
    else if(/^-?\d*\.?\d+$/.test(expr)&&!isNaN(val.num)){
      r=Math.abs(val.num-parseFloat(expr))<=1e-9*Math.max(1,Math.abs(val.num));}
    else r=val.text.indexOf(expr.toLowerCase())>=0;
    return neg?!r:r;}
  function apply(){var states={};boxes.forEach(function(b){states[b.value]=b.checked;});
    var q=(search&&search.value||'').trim().toLowerCase(), n=0;
    rows.forEach(function(row){var ok=states[row.dataset.state]!==false;
      if(ok&&q)ok=row.textContent.toLowerCase().indexOf(q)>=0;
      for(var i=0;ok&&i<inputs.length;i++){
        if(inputs[i].value)ok=test(inputs[i].value,cellValue(row,+inputs[i].dataset.col));}
      row.style.display=ok?'':'none'; if(ok)n++;});
    if(shown)shown.textContent=n+' of '+rows.length+' trials shown';}
  heads.forEach(function(th,i){if(!th.classList.contains('sort'))return;th.addEventListener('click',function(){
    var dir=th.dataset.dir==='asc'?'desc':'asc'; heads.forEach(function(h){delete h.dataset.dir;}); th.dataset.dir=dir;
    var s=dir==='asc'?1:-1;
    rows.sort(function(a,b){var x=cellValue(a,i),y=cellValue(b,i);
      if(!isNaN(x.num)||!isNaN(y.num)){if(isNaN(x.num))return 1;if(isNaN(y.num))return -1;return s*(x.num-y.num);}
      return s*x.text.localeCompare(y.text);});
    rows.forEach(function(r){tbody.appendChild(r);});});});
  inputs.forEach(function(x){x.addEventListener('input',apply);});
  boxes.forEach(function(x){x.addEventListener('change',apply);});
  if(search)search.addEventListener('input',apply);
  apply();
})();
