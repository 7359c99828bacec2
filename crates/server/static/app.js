// callbridge UI: small progressive enhancements. Every page works without this file.
"use strict";
document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", function () {
  // A <select data-autosubmit> submits its form when changed (the tenant switcher).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.value) select.form.submit();
    });
  });

  // A switch with data-reveals="id" shows the element with that id only while it is on
  // (the seed: turning on "Save all calls" opens the CRM-user field).
  document.querySelectorAll("input[data-reveals]").forEach(function (input) {
    var target = document.getElementById(input.getAttribute("data-reveals"));
    if (!target) return;
    var sync = function () {
      target.hidden = !input.checked;
    };
    input.addEventListener("change", sync);
    sync();
  });

  // A button with data-copy="id" copies that element's text (or value) to the clipboard.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      var text = source.value !== undefined && source.value !== "" ? source.value : source.textContent;
      var done = function () {
        var label = button.getAttribute("data-copied");
        if (!label) return;
        var original = button.textContent;
        button.textContent = label;
        setTimeout(function () { button.textContent = original; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text.trim()).then(done, function () {});
      } else {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
      }
    });
  });

  // Forms with data-confirm ask before submitting (restoring a settings version).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
});

// ---- Settings window (ui/settings) ----
// A switch's visible state ("On"/"Off") follows the switch; the words come from the page.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".switch input[type=checkbox]").forEach(function (input) {
    var label = input.closest(".switch");
    var state = label && label.querySelector(".state[data-on][data-off]");
    if (!state) return;
    input.addEventListener("change", function () {
      state.textContent = input.checked ? state.getAttribute("data-on") : state.getAttribute("data-off");
    });
  });
});

// A block a switch hides stays open while it holds an error to correct.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[hidden]").forEach(function (block) {
    if (block.querySelector(".field-error")) block.hidden = false;
  });
});
