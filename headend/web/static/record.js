// Recording: MediaRecorder's file goes into the same file field as an upload, so the
// server checks and prepares it exactly like an uploaded file. The page's words come from
// the status element's data- attributes (in the page's language).
(function () {
  var start = document.getElementById("rec-start"), stop = document.getElementById("rec-stop");
  var status = document.getElementById("rec-status"), play = document.getElementById("rec-play");
  var input = document.getElementById("audio"), rec = null, chunks = [], t0 = 0, timer = null;
  function say(key, seconds) {
    status.textContent = status.getAttribute("data-" + key).replace("{n}", seconds);
  }
  function elapsed() { return Math.round((Date.now() - t0) / 1000); }
  if (!window.MediaRecorder || !navigator.mediaDevices) {
    say("unsupported", "");
    start.disabled = true; return;
  }
  start.addEventListener("click", function () {
    navigator.mediaDevices.getUserMedia({audio: true}).then(function (stream) {
      chunks = []; rec = new MediaRecorder(stream);
      rec.ondataavailable = function (e) { if (e.data.size) chunks.push(e.data); };
      rec.onstop = function () {
        stream.getTracks().forEach(function (t) { t.stop(); });
        clearInterval(timer);
        var type = rec.mimeType || "audio/webm", ext = type.indexOf("ogg") >= 0 ? "ogg" : "webm";
        var file = new File(chunks, "ghi-am." + ext, {type: type});
        var dt = new DataTransfer(); dt.items.add(file); input.files = dt.files;
        play.src = URL.createObjectURL(file); play.hidden = false;
        document.querySelector("input[name=source][value=record]").checked = true;
        say("done", elapsed());
        start.disabled = false; stop.disabled = true;
      };
      rec.start(1000); t0 = Date.now(); start.disabled = true; stop.disabled = false;
      timer = setInterval(function () { say("recording", elapsed()); }, 500);
    }, function () { say("denied", ""); });
  });
  stop.addEventListener("click", function () { if (rec && rec.state !== "inactive") { rec.stop(); } });
})();
