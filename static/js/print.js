// "Print / save as PDF" buttons: the browser's print dialog can also save the page as a PDF.
document.querySelectorAll("[data-print]").forEach(function (button) {
  "use strict";
  button.addEventListener("click", function () { window.print(); });
});

// A page whose address is a secret (a shared report's holds its token, a working link to the
// photos) names an address without it in data-print-address. Browsers print the page's address
// in the header or footer, so every paper or PDF copy would carry the link: while printing
// (the button, the menu or Ctrl+P alike), the address shown is that one, then the real one again.
(function () {
  "use strict";
  var holder = document.querySelector("[data-print-address]");
  if (!holder) { return; }
  var secretAddress = null;
  window.addEventListener("beforeprint", function () {
    // kept from a first beforeprint: a second one before afterprint would save "/shared/"
    secretAddress = secretAddress || window.location.href;
    window.history.replaceState(window.history.state, "", holder.dataset.printAddress);
  });
  window.addEventListener("afterprint", function () {
    if (secretAddress) { window.history.replaceState(window.history.state, "", secretAddress); }
    secretAddress = null;
  });
}());
