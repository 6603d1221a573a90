// Reload every 5 s to show fresh cluster states, but not while someone is picking a date.
setInterval(function () {
  var a = document.activeElement;
  if (!a || (a.tagName !== "INPUT" && a.tagName !== "BUTTON")) { location.reload(); }
}, 5000);
