/* The order form: shows the recurring fields only for a recurring order (the interval or the cron
 * field, as chosen), disables the maximum when "Unlimited" is ticked, fills the cron field from a
 * preset, and previews the schedule in words and the next five run times from the server while the
 * user types (nothing is saved). */
(function () {
  "use strict";

  var form = document.getElementById("order-form");
  if (!form) {
    return;
  }
  var recurringFields = document.getElementById("recurring-fields");
  var intervalFields = document.getElementById("interval-fields");
  var cronFields = document.getElementById("cron-fields");
  var cronInput = form.querySelector("input[name=cron]");
  var scheduleInput = form.querySelector("input[name=schedule_time]");
  var words = document.getElementById("preview-words");
  var unlimited = form.querySelector("input[name=unlimited]");
  var maximum = form.querySelector("input[name=max_executions]");
  var list = document.getElementById("preview-list");
  var statusLine = document.getElementById("preview-status");
  var zoneLabel = document.getElementById("preview-zone");
  var previewUrl = form.getAttribute("data-preview-url");
  var timer = null;
  var sequence = 0;

  function kind() {
    var checked = form.querySelector("input[name=kind]:checked");
    return checked ? checked.value : "once";
  }

  function repeatKind() {
    var checked = form.querySelector("input[name=repeat_kind]:checked");
    return checked ? checked.value : "interval";
  }

  function syncFields() {
    recurringFields.hidden = kind() !== "recurring";
    if (intervalFields && cronFields) {
      intervalFields.hidden = repeatKind() === "calendar";
      cronFields.hidden = repeatKind() !== "calendar";
    }
    if (unlimited && maximum) {
      maximum.disabled = unlimited.checked;
    }
  }

  function usePreset(event) {
    var template = event.currentTarget.getAttribute("data-cron-preset");
    // The hour and minute of the schedule time (09:30 unless one is typed).
    var match = /T(\d{2}):(\d{2})/.exec(scheduleInput ? scheduleInput.value : "");
    var hour = match ? String(parseInt(match[1], 10)) : "9";
    var minute = match ? String(parseInt(match[2], 10)) : "30";
    cronInput.value = template.replace("{hour}", hour).replace("{minute}", minute);
    changed();
    cronInput.focus();
  }

  function showPreview(data) {
    list.replaceChildren();
    if (words) {
      words.textContent = data.description || "";
    }
    zoneLabel.textContent = data.time_zone ? "(" + data.time_zone + ")" : "";
    var errors = data.errors || {};
    var messages = Object.keys(errors).map(function (name) {
      return errors[name].join(" ");
    });
    if (messages.length) {
      statusLine.textContent = "Fix the form to see a preview. " + messages.join(" ");
      return;
    }
    (data.runs || []).forEach(function (run) {
      var item = document.createElement("li");
      item.textContent = run;
      list.appendChild(item);
    });
    statusLine.textContent = data.runs && data.runs.length ? "" : "No runs ahead.";
  }

  function preview() {
    // POSTed as a form: the CSRF token travels with it, and a long name does not make the request
    // line too long. A half-filled form answers 200 with the fields still missing.
    var body = new URLSearchParams(new FormData(form));
    body.delete("idempotency_key");
    var mine = ++sequence;
    window
      .fetch(previewUrl, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Requested-With": "fetch" },
      })
      .then(function (response) {
        if (response.redirected || !response.ok) {
          throw new Error("preview unavailable");
        }
        return response.json();
      })
      .then(function (data) {
        // An older answer arriving late must not overwrite a newer one.
        if (mine === sequence) {
          showPreview(data);
        }
      })
      .catch(function () {
        if (mine === sequence) {
          list.replaceChildren();
          statusLine.textContent = "The preview is not available right now.";
        }
      });
  }

  function changed() {
    syncFields();
    window.clearTimeout(timer);
    timer = window.setTimeout(preview, 250);
  }

  Array.prototype.forEach.call(form.querySelectorAll("[data-cron-preset]"), function (button) {
    button.addEventListener("click", usePreset);
  });
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  syncFields();
  preview();
})();
