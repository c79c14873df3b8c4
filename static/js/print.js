// "Print / save as PDF" buttons: the browser's print dialog can also save the page as a PDF.
document.querySelectorAll("[data-print]").forEach(function (button) {
  "use strict";
  button.addEventListener("click", function () { window.print(); });
});
