// On every page (base.html), after Bootstrap.
(function () {
  "use strict";
  // A message closed with its ✕ is gone, and the focus with it: the browser would drop it to
  // the page's start, where the next Tab begins again from the menu. The messages sit at the
  // top of the main content, which takes the focus instead (tabindex=-1, as for the skip link).
  // Bootstrap fires closed.bs.alert once the alert has left the page, from where the event no
  // longer reaches the document: the listener goes on the alert as it starts to close.
  function focusMain() {
    var main = document.getElementById("main");
    if (main) main.focus();
  }
  document.addEventListener("close.bs.alert", function (event) {
    event.target.addEventListener("closed.bs.alert", focusMain, { once: true });
  });
})();
