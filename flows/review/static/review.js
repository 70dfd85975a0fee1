// The review screen without page reloads: decisions are posted in the background and the next
// item's HTML swapped in; keys a/c/n/s decide; OCR words clicked on the page build the
// correction. Everything also works without this file (plain forms).
"use strict";

function csrf() { return document.body.dataset.csrf; }

function formOf(el) { return el.closest("form.decide") || document.querySelector("#item form.decide"); }

function chooseWord(button) {
  const scope = document.querySelector("#document") ? activeRow() : document.querySelector("#item");
  if (!scope) return;
  const form = scope.matches("form") ? scope : scope.querySelector("form.decide");
  const words = form.querySelector("input[name=words]");
  const value = form.querySelector("input[name=value]");
  const page = form.querySelector("input[name=page]");
  const chosen = words.value ? words.value.split(",") : [];
  const samePage = page.value === button.dataset.page;
  if (!samePage) { chosen.length = 0; value.value = ""; page.value = button.dataset.page;
    document.querySelectorAll(".word.chosen").forEach((w) => w.classList.remove("chosen")); }
  const at = chosen.indexOf(button.dataset.i);
  if (at >= 0) { chosen.splice(at, 1); button.classList.remove("chosen"); }
  else { chosen.push(button.dataset.i); button.classList.add("chosen"); }
  words.value = chosen.join(",");
  const pageEl = button.closest(".page");
  value.value = chosen.map((i) => pageEl.querySelector(`.word[data-i="${i}"]`).dataset.text).join(" ");
  value.focus();
}

let lastRow = null;
function activeRow() { return lastRow || document.querySelector("form.field-row"); }

async function submit(form, decision) {
  const body = new FormData(form);
  body.set("decision", decision);
  body.set("fragment", "1");
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  const response = await fetch(form.action, {
    method: "POST", body, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin",
  });
  if (form.classList.contains("field-row")) {
    if (response.ok) {
      form.classList.add("saved");
      const note = document.createElement("p");
      note.className = "saved-note";
      note.textContent = `saved: ${decision}`;
      form.append(note);
    } else {
      buttons.forEach((b) => { b.disabled = false; });
      alert(await response.text());
    }
    return;
  }
  const slot = document.querySelector("#item-slot");
  const html = await response.text();
  if (response.ok && slot) {
    slot.innerHTML = html;  // the next item, rendered by the server
    showField();
  } else {
    document.open(); document.write(html); document.close();  // the server's explanation
  }
}

// Scroll the page so the field's box is in view (the zoomed crop shows it up close).
function showField() {
  const box = document.querySelector("#item .field-box");
  if (box) box.scrollIntoView({ block: "center", inline: "nearest" });
}
document.addEventListener("DOMContentLoaded", showField);

document.addEventListener("click", (event) => {
  const word = event.target.closest("button.word");
  if (word) { event.preventDefault(); chooseWord(word); return; }
  const row = event.target.closest("form.field-row");
  if (row) lastRow = row;
});

document.addEventListener("focusin", (event) => {
  const row = event.target.closest && event.target.closest("form.field-row");
  if (row) lastRow = row;
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.decide");
  if (!form) return;
  event.preventDefault();
  const decision = (event.submitter && event.submitter.value) || "correct";
  submit(form, decision);
});

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const form = document.querySelector("#item form.decide");
  if (!form) return;
  const typing = event.target.matches && event.target.matches("input, textarea");
  if (typing) {
    if (event.key === "Enter") { event.preventDefault(); submit(form, "correct"); }
    if (event.key === "Escape") { event.target.blur(); }
    return;
  }
  const keys = { a: "accept", n: "absent", s: "skip" };
  if (keys[event.key]) {
    const button = form.querySelector(`button[value=${keys[event.key]}]`);
    if (button && !button.disabled) { event.preventDefault(); submit(form, keys[event.key]); }
  } else if (event.key === "c") {
    event.preventDefault();
    form.querySelector("input[name=value]").focus();
  }
});
