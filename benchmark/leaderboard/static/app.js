// subliminal-bench leaderboard: sort the cells table by a clicked header, filter its rows. The rows are in the
// HTML already (the page works without this script); each cell carries its raw value in data-sort.
(function () {
  "use strict";
  var table = document.getElementById("cells");
  if (!table) { return; }
  var tbody = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var count = document.getElementById("row-count");

  function cellValue(row, key, type) {
    var cell = row.querySelector('td[data-key="' + key + '"]');
    var raw = cell ? cell.getAttribute("data-sort") : "";
    if (type === "num") { return raw === "" ? NaN : parseFloat(raw); }
    return raw.toLowerCase();
  }

  function sortBy(th) {
    var key = th.getAttribute("data-key");
    var type = th.getAttribute("data-type");
    var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" :
      (th.getAttribute("aria-sort") === "ascending" ? "descending" : (type === "num" ? "descending" : "ascending"));
    headers.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, key, type), y = cellValue(b, key, type);
      if (type === "num") {  // missing values last, whatever the direction
        if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
        return sign * (x - y);
      }
      return sign * (x < y ? -1 : x > y ? 1 : 0);
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  headers.forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); } });
  });

  var text = document.getElementById("filter-text");
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var placebo = document.getElementById("filter-placebo");

  function applyFilters() {
    var needle = (text.value || "").toLowerCase();
    var wanted = {};
    selects.forEach(function (s) { wanted[s.getAttribute("data-filter")] = s.value; });
    var shown = 0, rows = tbody.rows;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], d = r.dataset, ok = true;
      if (!placebo.checked && d.placebo === "True") { ok = false; }
      if (ok && wanted.suite && d.suite !== wanted.suite) { ok = false; }
      if (ok && wanted.track && d.track !== wanted.track) { ok = false; }
      if (ok && wanted.relation && d.relation !== wanted.relation) { ok = false; }
      if (ok && wanted.family && d.teacherFamily !== wanted.family && d.studentFamily !== wanted.family) { ok = false; }
      if (ok && needle && r.textContent.toLowerCase().indexOf(needle) < 0) { ok = false; }
      r.hidden = !ok;
      shown += ok ? 1 : 0;
    }
    count.textContent = shown + " of " + rows.length + " rows";
  }

  text.addEventListener("input", applyFilters);
  selects.forEach(function (s) { s.addEventListener("change", applyFilters); });
  placebo.addEventListener("change", applyFilters);
  var params = new URLSearchParams(window.location.search);  // index.html?suite=NAME from a suite page
  selects.forEach(function (s) {
    var v = params.get(s.getAttribute("data-filter"));
    if (v !== null) { s.value = v; }
  });
  applyFilters();
}());
