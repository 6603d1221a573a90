// One tap sends: the button is disabled and says so while the headend sends (the key makes
// a second request harmless anyway).
document.getElementById("send-form").addEventListener("submit", function () {
  var b = document.getElementById("send");
  setTimeout(function () { b.disabled = true; b.textContent = b.getAttribute("data-sending"); }, 0);
});
