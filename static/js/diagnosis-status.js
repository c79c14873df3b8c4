// The result page: polls the status endpoint while a diagnosis is queued or running, then swaps
// in the result; focuses and copies a new share link.
(function () {
  "use strict";
  var box = document.getElementById("result");
  if (!box) return;
  var pending = function (status) { return status === "queued" || status === "running"; };
  // "Photo received… usually takes a few seconds" is stale once the result (or failure) is shown.
  function dropPendingNotice() {
    document.querySelectorAll('[data-notice~="analysis-pending"]').forEach(function (notice) {
      notice.remove();
    });
  }

  if (!pending(box.dataset.status)) {
    dropPendingNotice();  // a fast worker finished before the page opened
    return;
  }
  // "usually takes a few seconds" contradicts the late notice the result box shows instead
  if (box.dataset.late === "true") dropPendingNotice();
  // What the page swaps or removes (the result box's content, the "Photo received…" notice)
  // takes the keyboard's focus with it, to the page's start, where the next Tab begins again
  // from the menu. Focus that was in it goes to the result box instead (tabindex=-1): it stays,
  // and the next Tab reaches what came in its place. Not #main, where a closed message sends it
  // (site.js): the result is what changed. Focus elsewhere (or none) is left where it is.
  function keepingFocus(change) {
    var before = document.activeElement;
    change();
    if (before && before !== document.body && !before.isConnected) box.focus();
  }
  var delay = 1000;
  var announcer = document.getElementById("result-announcer");

  // Screen readers do not read a live region inserted along with its text (the swapped-in
  // result, the late and trouble notices): what they must hear goes through the announcer,
  // which is on the page from the start.
  function announce(message) {
    if (announcer) announcer.textContent = message;
  }
  // The result itself, as the badge and the figure beside it show it: "ready" alone would
  // send the listener looking for it.
  function resultReady() {
    var risk = box.querySelector("[data-risk]");
    var probability = box.querySelector('[data-testid="malignant-probability"]');
    if (!risk || !probability) return "Your result is ready.";
    return "Your result is ready: " + risk.textContent.trim() + ", " +
      probability.textContent.trim() + " malignant probability.";
  }
  function announceStatus(status) {
    var late = box.querySelector('[data-testid="late"]');
    if (status === "done") announce(resultReady());
    else if (status === "failed") announce("The analysis did not complete.");
    else if (late) announce(late.textContent);
  }

  // An answer that will not change by asking again stops the polling, and the page says why:
  // the check deleted (from another tab or device), or the session over (the sign-in page, or
  // the privacy notice, after a redirect). A server error or a dropped connection is retried.
  function lastingProblem(response) {
    var type = response.headers.get("Content-Type") || "";
    if (response.redirected || (response.ok && type.indexOf("application/json") !== 0)) {
      return "You are no longer signed in. Reload the page, and sign in again if asked, to see the result.";
    }
    if (response.status === 404) {
      return "This check is no longer there: it was deleted, perhaps from another tab or device.";
    }
    if (response.status >= 400 && response.status < 500) {
      return "The result could not be fetched (error " + response.status + "). Please reload the page.";
    }
    return "";
  }
  function stop(message) {
    var trouble = troubleNotice();  // "keeps trying" is no longer true
    if (trouble) trouble.remove();
    var alert = document.createElement("div");
    alert.className = "alert alert-warning";
    alert.setAttribute("role", "alert");
    alert.setAttribute("data-testid", "polling-stopped");
    alert.textContent = message;
    var spinner = box.querySelector(".pending-box");
    keepingFocus(function () {  // the late notice's link to My history goes with the spinner
      if (spinner) spinner.replaceWith(alert);
      else box.prepend(alert);
    });
  }

  // A server error, a dropped connection or a request unanswered for REQUEST_TIMEOUT_MS is
  // retried, and once no answer has come for TROUBLE_AFTER_MS the page says so (the photo is
  // kept) instead of showing the spinner as if all were well: with the wait before each
  // request, about ten seconds in (README). Counted in time, not in failures, so that a server
  // that never answers gets the notice at the first request given up on.
  var REQUEST_TIMEOUT_MS = 8000;
  var TROUBLE_AFTER_MS = REQUEST_TIMEOUT_MS;
  var answeredAt = Date.now();
  var failures = 0;
  function troubleNotice() { return box.querySelector('[data-testid="polling-trouble"]'); }
  function failed() {
    failures += 1;
    if (failures === 1) delay = 1000 / 1.3;  // ask again soon after the first failure
    if (Date.now() - answeredAt >= TROUBLE_AFTER_MS && !troubleNotice()) {
      var notice = document.createElement("div");
      notice.className = "alert alert-warning";
      notice.setAttribute("role", "status");
      notice.setAttribute("data-testid", "polling-trouble");
      notice.textContent = "molesite cannot be reached just now. Your photo is kept; this page " +
        "keeps trying and shows the result when it can.";
      box.prepend(notice);
      announce(notice.textContent);
    }
    schedule();
  }

  // The status as JSON, or null once polling has stopped; rejects on a failure worth retrying.
  // A server that takes the request and never answers (headers or body) is given up on after
  // REQUEST_TIMEOUT_MS: without that the spinner would turn for ever, with no notice.
  function fetchStatus() {
    var controller = new AbortController();
    var timer = window.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    var options = {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      signal: controller.signal,
    };
    return fetch(box.dataset.statusUrl, options)
      .then(function (response) {
        var problem = lastingProblem(response);
        if (problem) {
          stop(problem);
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .finally(function () { window.clearTimeout(timer); });
  }

  function poll() {
    fetchStatus()
      .then(function (data) {
        if (!data) return;
        failures = 0;
        answeredAt = Date.now();
        var trouble = troubleNotice();
        if (trouble) trouble.remove();
        var late = String(Boolean(data.late));
        if (data.status !== box.dataset.status || late !== box.dataset.late) {
          keepingFocus(function () {
            box.innerHTML = data.html;
            if (!pending(data.status) || data.late) dropPendingNotice();
          });
          box.dataset.status = data.status;
          box.dataset.late = late;
          announceStatus(data.status);
        }
        if (pending(data.status)) schedule();
      })
      .catch(failed);
  }
  function schedule() {
    delay = Math.min(delay * 1.3, 5000);
    window.setTimeout(poll, delay);
  }
  window.setTimeout(poll, delay);
})();

// A share link just made, shown only this once: the focus goes to it (and the page to it), so
// that a screen reader reads its label, which says so, and the keyboard is where the link is.
// Not `autofocus`, which browsers ignore on a page opened at a #fragment, as this one is
// (#share); and at the load event, not now: going to the fragment, once the page is parsed,
// moves the focus to the page's start (#share is no field). Not if the reader has moved it since.
(function () {
  "use strict";
  var link = document.getElementById("new-share-url");
  if (!link) return;
  window.addEventListener("load", function () {
    if (!document.activeElement || document.activeElement === document.body) link.focus();
  });
})();

// "Copy" beside a share link just made: shown only where this script runs; without it the link
// is selected and copied by hand from its read-only field.
document.querySelectorAll("[data-copy]").forEach(function (button) {
  "use strict";
  var field = document.getElementById(button.dataset.copy);
  var status = button.closest(".alert").querySelector("[data-copy-status]");
  button.hidden = false;
  function copied() {
    button.textContent = "Copied";
    status.textContent = "The link is copied.";
  }
  button.addEventListener("click", function () {
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(copied, function () {
        if (document.execCommand("copy")) copied();
      });
    } else if (document.execCommand("copy")) {
      copied();
    }
  });
});
