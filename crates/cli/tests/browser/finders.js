// Finds controls the way a person does: by the text they can read on the screen (or, for a
// visually hidden label, the text a screen reader reads), never by id, name or class.
// Called as the body of a WebDriver script: arguments[0] is the kind, arguments[1] the text.
// Answers {found: element} or {missing: "what was looked for and what the page offers"}.
const kind = arguments[0];
const wanted = arguments[1];

const normalize = (s) => (s || "").replace(/\s+/g, " ").trim();
// A label may carry a required-field marker or a colon after its words.
const bare = (s) => normalize(s).replace(/[\s*:]+$/, "");
const shown = (el) =>
  el.isConnected && el.checkVisibility({ visibilityProperty: true, contentVisibilityAuto: true });
const CONTROLS = "input:not([type=hidden]), select, textarea";

// The words of a label without the words of any control nested in it (a select's options) or
// hidden from assistive technology.
function labelText(label) {
  const copy = label.cloneNode(true);
  copy.querySelectorAll("select, textarea, datalist, [aria-hidden=true]").forEach((c) => c.remove());
  return bare(copy.textContent);
}

// A label may show more than its caption on lines of its own (a switch's "On"/"Off" below its
// words): its first rendered line is what a person reads as its name.
function labelReads(label, text) {
  if (labelText(label) === bare(text)) return true;
  const lines = (label.innerText || "").split("\n").map(bare).filter((l) => l);
  return lines.length > 1 && lines[0] === bare(text);
}

function labelledControl(label) {
  if (label.htmlFor) return document.getElementById(label.htmlFor);
  return label.querySelector(CONTROLS);
}

function byLabel(accept) {
  const labels = [...document.querySelectorAll("label")].filter(shown);
  const hits = labels.filter((l) => labelReads(l, wanted));
  for (const label of hits) {
    const control = labelledControl(label);
    if (control && accept(control)) return { found: control };
  }
  // aria-labelledby names a control by visible text elsewhere (a switch's caption).
  for (const control of document.querySelectorAll("[aria-labelledby]")) {
    const text = control
      .getAttribute("aria-labelledby")
      .split(/\s+/)
      .map((id) => document.getElementById(id))
      .filter((el) => el && shown(el))
      .map((el) => normalize(el.textContent))
      .join(" ");
    if (bare(text) === bare(wanted) && accept(control)) return { found: control };
  }
  const offered = labels.map(labelText).filter((t) => t);
  if (hits.length) {
    return { missing: `a label "${wanted}" exists but names no ${kind}` };
  }
  return { missing: `no visible label "${wanted}"; labels on the page: ${JSON.stringify(offered)}` };
}

function byText(candidates, textOf) {
  const visible = candidates.filter(shown);
  const hit = visible.find((el) => bare(textOf(el)) === bare(wanted));
  if (hit) return { found: hit };
  const offered = visible.map((el) => normalize(textOf(el))).filter((t) => t);
  return { missing: `no visible ${kind} "${wanted}"; ${kind}s on the page: ${JSON.stringify(offered)}` };
}

const isSwitch = (c) =>
  (c.tagName === "INPUT" && c.type === "checkbox") || c.getAttribute("role") === "switch";
const isField = (c) => c.matches(CONTROLS) || c.getAttribute("role") === "switch";

switch (kind) {
  case "field":
    return byLabel(isField);
  case "switch":
    return byLabel(isSwitch);
  case "button":
    return byText(
      [...document.querySelectorAll("button, input[type=submit], input[type=button], [role=button]")],
      (el) => (el.tagName === "INPUT" ? el.value : el.innerText),
    );
  case "link":
    return byText([...document.querySelectorAll("a[href]")], (el) => el.innerText);
  case "tab":
    // ARIA tabs, or the links of a tab list drawn as a navigation inside the main content
    // (the current one marked with aria-current).
    return byText(
      [...document.querySelectorAll("[role=tab], [role=tablist] a[href], main nav a[href]")],
      (el) => el.innerText,
    );
  case "text":
    // Any element whose own visible text is exactly this (a heading, a message).
    return byText(
      [...document.body.querySelectorAll("*")].filter((el) =>
        [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && normalize(n.textContent)),
      ),
      (el) => el.innerText,
    );
  default:
    return { missing: `the harness has no finder "${kind}"` };
}
