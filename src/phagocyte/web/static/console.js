// Keyboard use for analysts who live in the console: "/" search, j/k move in the queue, o or Enter opens,
// u goes back to the queue. No framework, no network calls: forms do the work.
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr"));
  var at = -1;
  function mark(i) {
    if (!rows.length) { return; }
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("sel", k === at); });
    rows[at].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target.tagName;
    if (t === "INPUT" || t === "TEXTAREA" || t === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "/") { var q = document.querySelector(".quick input"); if (q) { e.preventDefault(); q.focus(); } }
    else if (e.key === "j") { mark(at + 1); }
    else if (e.key === "k") { mark(at - 1); }
    else if ((e.key === "o" || e.key === "Enter") && at >= 0) {
      var a = rows[at].querySelector("a.incident-link"); if (a) { window.location = a.href; }
    } else if (e.key === "u") { window.location = "/"; }
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.danger"), function (b) {
    b.addEventListener("click", function (e) {
      if (!window.confirm(b.textContent.trim() + "?")) { e.preventDefault(); }
    });
  });
}());
