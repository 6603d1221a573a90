// Live until every village has answered or the command's minute is over: a GET, so a
// reload or a refresh never sends anything.
(function () {
  var result = document.getElementById("result");
  if (result.dataset.waiting !== "true") return;
  var url = location.pathname + "/status";
  var table = document.getElementById("villages");
  var head = table.rows[0].outerHTML;  // the header row, in the page's language
  function esc(t) { var d = document.createElement("div"); d.textContent = t; return d.innerHTML; }
  function tick() {
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (b) {
      document.getElementById("count").textContent = b.started + "/" + b.total;
      var rows = head;
      b.villages.forEach(function (v) {
        rows += '<tr data-state="' + esc(v.state) + '"><td>' + esc(v.village) + '</td><td class="' + esc(v.state) + '">'
          + esc(v.state_vi) + (v.reason ? ": " + esc(v.reason) : "") + "</td></tr>";
      });
      table.innerHTML = rows;
      result.className = b.started === b.total ? "ok" : (b.waiting ? "muted" : "err");
      result.dataset.waiting = b.waiting ? "true" : "false";
      if (b.waiting) { setTimeout(tick, 1000); } else { document.getElementById("waiting").textContent = ""; }
    }).catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
