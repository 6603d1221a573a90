// Forms that undo something ask first: their question is in data-confirm (the
// Content-Security-Policy refuses onsubmit attributes).
document.addEventListener("submit", function (e) {
  var question = e.target.getAttribute && e.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { e.preventDefault(); }
});
