// Dripstone's own behaviour, loaded on every page. No inline scripts: the
// Content-Security-Policy forbids them, so pages declare what they need with data-* attributes.
"use strict";

// <form data-confirm="Send to 1,234 subscribers?">: asks before the form is sent.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = event.submitter?.dataset.confirm || form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// <form data-live-target="frame-name" data-live-action="/path">: while the user types, the
// form is also posted to `data-live-action` into the named iframe (a live preview).
document.addEventListener("input", (event) => {
  const form = event.target.closest("form[data-live-action]");
  if (!form) return;
  clearTimeout(form.liveTimer);
  form.liveTimer = setTimeout(() => refreshPreview(form), 300);
});

function refreshPreview(form) {
  const original = { action: form.action, target: form.target };
  form.action = form.dataset.liveAction;
  form.target = form.dataset.liveTarget;
  HTMLFormElement.prototype.submit.call(form);
  form.action = original.action;
  form.target = original.target;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-live-action]")) refreshPreview(form);
});

// <button data-copy="#id">: copies the text of the element named.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  }
});

// --- Import ---------------------------------------------------------------------------------
// <select data-named-by="#id" data-named-when="new">: the element named (a text box for a new
// custom field's name) is shown only while that choice is selected. Without script it stays.
function showNamedBy(select) {
  const target = document.querySelector(select.dataset.namedBy);
  if (target) target.hidden = select.value !== select.dataset.namedWhen;
}

document.addEventListener("change", (event) => {
  if (event.target.matches?.("select[data-named-by]")) showNamedBy(event.target);
});

document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-named-by]")) showNamedBy(select);
});

// --- subscribers and lists ---------------------------------------------------------------
// <button data-add-row=".filters">: adds an empty copy of the last filter row to the
// fieldset named (without JavaScript a blank row is always there to fill in).
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-add-row]");
  if (!button) return;
  const fieldset = button.form?.querySelector(button.dataset.addRow);
  const rows = fieldset?.querySelectorAll(".filter-row");
  if (!rows || rows.length === 0) return;
  const last = rows[rows.length - 1];
  const copy = last.cloneNode(true);
  const index = rows.length;
  copy.classList.remove("invalid");
  copy.querySelectorAll(".field-error").forEach((error) => error.remove());
  copy.querySelectorAll("[id]").forEach((element) => {
    element.id = element.id.replace(/-\d+$/, `-${index}`);
    element.removeAttribute("aria-invalid");
    element.removeAttribute("aria-describedby");
  });
  copy.querySelectorAll("label[for]").forEach((label) => {
    label.htmlFor = label.htmlFor.replace(/-\d+$/, `-${index}`);
  });
  copy.querySelectorAll("input").forEach((input) => { input.value = ""; });
  copy.querySelectorAll("select").forEach((select) => { select.selectedIndex = 0; });
  last.after(copy);
  copy.querySelector("select[name=field]")?.focus();
});
