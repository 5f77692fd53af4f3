// Renders the OpenAPI document of this edge: no outside host, no inline
// script (the page's Content-Security-Policy allows this origin only).
"use strict";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function schemaBlock(title, schema) {
  return el("div", {}, el("strong", {}, title), el("pre", {}, JSON.stringify(schema, null, 2)));
}

function operation(path, method, op) {
  const body = el("div", { class: "body" });
  body.append(el("p", {}, op.summary || ""), el("p", {}, "operationId: ", el("code", {}, op.operationId || "")));
  const sec = (op.security || []).map((s) => Object.keys(s).join(" + ") || "none").join(" or ");
  body.append(el("p", {}, "Credentials: ", sec || "none"));
  if (op.parameters && op.parameters.length) {
    const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description")));
    for (const p of op.parameters) {
      const s = p.schema || {};
      t.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
        el("td", {}, (s.type || "") + (s.enum ? " (" + s.enum.join(", ") + ")" : "")), el("td", {}, p.description || "")));
    }
    body.append(t);
  }
  if (op.requestBody) {
    for (const [ct, c] of Object.entries(op.requestBody.content || {})) body.append(schemaBlock("Request body (" + ct + ")", c.schema));
  }
  for (const [status, r] of Object.entries(op.responses || {}).sort()) {
    const c = (r.content || {})["application/json"];
    const d = el("details", {}, el("summary", {}, status + " " + (r.description || "")));
    if (c) d.append(el("pre", {}, JSON.stringify(c.schema, null, 2)));
    body.append(d);
  }
  const d = el("details", { "data-search": (path + " " + (op.summary || "") + " " + (op.operationId || "")).toLowerCase() },
    el("summary", {}, el("span", { class: "m " + method }, method), " ", el("code", {}, path), " — ", op.summary || ""), body);
  return d;
}

async function main() {
  const ops = document.getElementById("ops");
  let doc;
  try {
    const r = await fetch("/openapi/v1.json");
    doc = await r.json();
  } catch (e) {
    ops.replaceChildren(el("p", {}, "Could not load /openapi/v1.json: " + e));
    return;
  }
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths).sort()) {
    const group = path.startsWith("/v1/") ? "Segment-compatible" : path.split("/")[3] || "other";
    if (!groups.has(group)) groups.set(group, []);
    for (const [method, op] of Object.entries(item)) groups.get(group).push(operation(path, method, op));
  }
  ops.replaceChildren();
  for (const [g, list] of groups) ops.append(el("h2", {}, g), ...list);
  document.getElementById("filter").addEventListener("input", (ev) => {
    const q = ev.target.value.toLowerCase();
    for (const d of ops.querySelectorAll("details[data-search]")) d.hidden = q !== "" && !d.dataset.search.includes(q);
  });
}

main();
