// The upload form: drag-and-drop, camera or file picker, a preview, then an XHR upload with a
// progress bar. The server answers JSON {redirect} on success, or the re-rendered form (400, or
// 429 over the upload limit, with the fields as sent) with its messages, which replaces the form's
// content.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var previewUrl = null;

  function $(selector) { return form.querySelector(selector); }

  function setFiles(input, files) {
    try {
      var transfer = new DataTransfer();
      transfer.items.add(files[0]);
      input.files = transfer.files;
      return true;
    } catch (e) {
      return false;
    }
  }

  // The message is tied to the field, as the server's are: named in its aria-describedby (after
  // the help text) and the field marked invalid while it shows. Cleared, the field is left as the
  // server sent it: still invalid after a refused upload (.has-error) until the page changes.
  function showClientError(message) {
    var box = $("[data-client-error]");
    var input = mainInput();
    box.textContent = message || "";
    box.hidden = !message;
    if (!input) return;
    var ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(function (id) {
      return id && id !== box.id;
    });
    if (message) ids.push(box.id);
    if (ids.length) input.setAttribute("aria-describedby", ids.join(" "));
    else input.removeAttribute("aria-describedby");
    if (message) input.setAttribute("aria-invalid", "true");
    else if (!$(".upload-field.has-error")) input.removeAttribute("aria-invalid");
  }

  // A file with no type (HEIC on many systems) may still be a photo: the server decides.
  function isNotAnImage(file) {
    return Boolean(file.type) && file.type.indexOf("image/") !== 0;
  }

  // Why the server would refuse this file, by the limits the form gives (data-accepted,
  // data-max-bytes), or "": shown with the preview, and the upload is not sent while it holds.
  function problemWith(file) {
    var limits = mainInput().dataset;
    var maxBytes = Number(limits.maxBytes);
    if (isNotAnImage(file)) {
      return "This file is not a photo. Please choose a " + limits.accepted + " image.";
    }
    if (maxBytes && file.size > maxBytes) {
      return "This photo is larger than " + Math.round(maxBytes / 1048576) +
        " MB. Please choose a smaller one.";
    }
    return "";
  }

  function showPreview(file) {
    var preview = $("[data-preview]");
    var empty = $("[data-empty]");
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (!file) {
      preview.hidden = true;
      empty.hidden = false;
      return;
    }
    showClientError(problemWith(file));
    var notAnImage = isNotAnImage(file);
    var img = $("[data-preview-img]");
    var missing = $("[data-preview-missing]");
    missing.hidden = true;
    img.hidden = notAnImage;  // a text file or a PDF gets its name and the message, no picture
    img.onerror = null;
    img.removeAttribute("src");
    if (!notAnImage) {
      previewUrl = URL.createObjectURL(file);
      // Only some browsers decode HEIC (Safari does, Chrome does not): say so instead of
      // showing a broken image; the server converts it either way.
      img.onerror = function () {
        img.hidden = true;
        missing.hidden = false;
      };
      img.src = previewUrl;
    }
    var size = file.size >= 1048576 ? (file.size / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(file.size / 1024)) + " KB";
    $("[data-preview-name]").textContent = file.name + " · " + size;
    preview.hidden = false;
    empty.hidden = true;
  }

  // A photo the reader chose (picked, taken or dropped): the preview replaces "Take a photo" and
  // "Choose a file", and would take the keyboard's focus with them to the page's start; it goes
  // to the preview's "Change" instead, unless the reader had moved it elsewhere. The status
  // region says what was chosen (the preview's name is no live region). Not for a photo the page
  // opens with or keeps after a refused upload (showPreview alone): there nothing was done.
  function picked(file) {
    var empty = $("[data-empty]");
    var active = document.activeElement;
    var lost = !active || active === document.body || empty.contains(active);
    showPreview(file);
    $("[data-progress-status]").textContent = "Photo chosen: " + file.name;
    if (lost) $("[data-preview] [data-pick]").focus();
  }

  function mainInput() { return form.querySelector("input[type=file][name=image]"); }

  function bind() {
    form.classList.add("enhanced");
    var input = mainInput();
    var gallery = $("#gallery-input");
    var zone = $("[data-dropzone]");
    if (!input || !zone) return;
    // The camera straight away for "Take a photo", which opens this input: set here, not in
    // the form's HTML, where this is the only file input and must offer the gallery too.
    input.setAttribute("capture", "environment");
    input.addEventListener("change", function () {
      if (input.files.length) picked(input.files[0]);
      else showPreview(null);
    });
    // A photo chosen before this script ran (on a slow connection, or kept by the browser when
    // going back to the page) gets its preview all the same.
    if (input.files.length) showPreview(input.files[0]);
    if (gallery) {
      gallery.addEventListener("change", function () {
        if (gallery.files.length && setFiles(input, gallery.files)) picked(input.files[0]);
      });
    }
    form.querySelectorAll("[data-pick]").forEach(function (button) {
      button.addEventListener("click", function () {
        (button.dataset.pick === "camera" || !gallery ? input : gallery).click();
      });
    });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      var files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length && setFiles(input, files)) picked(input.files[0]);
    });
    var errors = $("#upload-errors");
    if (errors) errors.focus();
  }

  // The steps (not each percent, which would talk over everything) go to the live region.
  function setProgress(percent, label) {
    var box = $("[data-progress]");
    box.hidden = false;
    box.querySelector(".progress-bar").style.width = percent + "%";
    box.querySelector(".progress").setAttribute("aria-valuenow", String(percent));
    box.querySelector("[data-progress-value]").textContent = percent + "%";
    if (label) {
      box.querySelector("[data-progress-label]").textContent = label;
      $("[data-progress-status]").textContent = label;
    }
  }

  // While the photo is sent the button is marked busy, not disabled: disabling the focused
  // button would drop the keyboard's focus to the start of the page. The submit handler
  // ignores a second press (or Enter in a field) meanwhile.
  function setBusy(busy) {
    var button = $("[data-submit]");
    if (busy) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
  }
  function isBusy() { return $("[data-submit]").getAttribute("aria-disabled") === "true"; }

  function failed(message) {
    $("[data-progress]").hidden = true;
    $("[data-progress-status]").textContent = "";  // the client error (role=alert) says why
    setBusy(false);
    showClientError(message);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();  // sent below by XHR, or not at all
    if (isBusy()) return;  // already sending
    var input = mainInput();
    var file = input && input.files[0];
    var problem = file ? problemWith(file) : "Please choose or take a photo first.";
    showClientError(problem);
    if (problem) return;
    setBusy(true);
    setProgress(0, "Uploading…");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) setProgress(Math.round((e.loaded / e.total) * 100));
    });
    xhr.upload.addEventListener("load", function () { setProgress(100, "Checking the photo…"); });
    xhr.addEventListener("load", function () {
      var type = xhr.getResponseHeader("Content-Type") || "";
      if (xhr.status === 201 && type.indexOf("application/json") === 0) {
        window.location.assign(JSON.parse(xhr.responseText).redirect);
      } else if ((xhr.status === 400 || xhr.status === 429) && type.indexOf("text/html") === 0) {
        var sent = input.files[0];
        form.innerHTML = xhr.responseText;
        bind();
        // Keep the chosen photo when only another field was wrong.
        if (!$(".upload-field.has-error") && setFiles(mainInput(), [sent])) showPreview(sent);
      } else if (xhr.status === 413) {
        failed("This photo is too large to upload. Please choose a smaller one.");
      } else if (xhr.status === 403 || xhr.status === 200) {
        // 200: redirected, as the upload never answers that itself: to the sign-in page (the
        // session is over) or to the privacy notice. Sending again cannot help.
        failed("Your session has expired. Please reload the page and sign in again.");
      } else {
        failed("The upload failed (error " + xhr.status + "). Please try again in a moment.");
      }
    });
    xhr.addEventListener("error", function () {
      failed("The upload failed: check your connection and try again.");
    });
    xhr.send(new FormData(form));
  });

  // A photo dropped beside the drop zone would have the browser open it in place of the page,
  // losing the form: there a dropped file does nothing (dragged text still drops into a field).
  // Set once: bind() runs again after a 400.
  function carriesFiles(event) {
    var types = event.dataTransfer ? event.dataTransfer.types : [];
    return Array.prototype.indexOf.call(types, "Files") !== -1;
  }
  ["dragover", "drop"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      if (carriesFiles(event)) event.preventDefault();
    });
  });
  bind();
})();
