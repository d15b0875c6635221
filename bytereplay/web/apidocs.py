"""The API description machinery both services share: `/openapi.json` and a `/docs` page.

The handlers read raw request bodies (strict JSON: duplicate keys, depth and size
refused; raw Evidence), so FastAPI cannot infer their bodies. Each route names its
request body (`openapi_extra`) and its answers (`responses`) from the schemas in
`attester.apidocs` and `verifier.apidocs`, built with the helpers here; every refusal
is described as RFC 9457 problem+json.

The `/docs` page is one self-contained HTML document held in this module (package data
needs nothing more): its inline script fetches `openapi.json` and renders every path,
method, summary, parameter, request body and answer. It loads nothing from elsewhere,
and its Content-Security-Policy allows only its own script and style (by hash) and
requests to the same origin. `/redoc` redirects to it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse

Schema = dict[str, Any]
Responses = dict[int | str, dict[str, Any]]

PROBLEM_MEDIA = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: Schema = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details: every refusal has this form.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "problem type URI (or about:blank)"},
        "title": {"type": "string", "description": "short, fixed summary of the problem type"},
        "status": {"type": "integer", "description": "the HTTP status"},
        "detail": {"type": "string", "description": "what was wrong, naming the field"},
        "instance": {"type": "string", "description": "the request path"},
    },
}
PROBLEM_TEXT = {
    400: "Invalid request: malformed JSON, an unknown or invalid field (named in `detail`)",
    401: "The bearer token the endpoint is guarded by is missing or wrong",
    404: "Not found",
    405: "Method not allowed",
    406: "The Accept header admits no answer given here (every type excluded, or an "
         "unknown eat_profile)",
    409: "The resource's state does not allow the request",
    413: "Request body over the configured limit",
    415: "Unsupported content type",
    503: "Not ready, busy, or a dependency unavailable; retry later",
}


def problems(*codes: int) -> Responses:
    """`responses=` entries for problem+json refusals with these statuses."""
    return {code: {"description": PROBLEM_TEXT.get(code, "Refused"),
                   "content": {PROBLEM_MEDIA: {"schema": PROBLEM_REF}}} for code in codes}


def json_answer(description: str, schema: Schema, *, status: int = 200,
                headers: dict[str, Any] | None = None,
                media: str = "application/json") -> Responses:
    """A `responses=` entry for a JSON answer (of `media`, a JSON media type)."""
    entry: dict[str, Any] = {"description": description,
                             "content": {media: {"schema": schema}}}
    if headers:
        entry["headers"] = headers
    return {status: entry}


def json_body(schema: Schema, *, required: bool = True, description: str = "") -> dict[str, Any]:
    """`openapi_extra=` naming a JSON request body."""
    body: dict[str, Any] = {"required": required,
                            "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def _tidy(doc: dict[str, Any]) -> None:
    """Drop what FastAPI adds that these services never answer: the 422 validation
    error (they answer 400 problem+json) and an empty application/json beside a
    described media type."""
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            responses = op.get("responses", {})
            responses.pop("422", None)
            for answer in responses.values():
                content = answer.get("content")
                if isinstance(content, dict) and len(content) > 1 and \
                        content.get("application/json") == {"schema": {}}:
                    del content["application/json"]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = PROBLEM_SCHEMA


class ServiceApp(FastAPI):
    """FastAPI with `/openapi.json` tidied as above, the local `/docs` page and
    `/redoc` redirecting to it (FastAPI's own pages, which load from a CDN, are off)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(openapi_url="/openapi.json", docs_url=None, redoc_url=None,
                         **kwargs)

        @self.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return HTMLResponse(DOCS_HTML, headers=DOCS_HEADERS)

        @self.get("/redoc", include_in_schema=False)
        async def redoc() -> RedirectResponse:
            return RedirectResponse("docs", status_code=307)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            doc = super().openapi()
            _tidy(doc)
            self.openapi_schema = doc
        return self.openapi_schema


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c8ccd6}
main{max-width:1000px;margin:0 auto;padding:16px 24px}
nav a{display:block;color:#1d2330;text-decoration:none;font-family:monospace;padding:1px 0}
details.op{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:10px 0}
details.op>summary{cursor:pointer;padding:8px 12px;font-family:monospace;font-size:15px}
.m{display:inline-block;min-width:58px;font-weight:700;color:#fff;border-radius:4px;
text-align:center;padding:1px 6px;margin-right:8px}
.get{background:#2f7d4f}.post{background:#2d5fa8}.put,.patch{background:#9a6a00}
.delete{background:#a83232}.sum{font-family:system-ui,sans-serif;color:#555;margin-left:8px}
.body{padding:4px 16px 12px}h3{font-size:14px;margin:14px 0 4px;text-transform:uppercase;
color:#555}h4{font-size:14px;margin:8px 0 2px;font-family:monospace}
ul.s{list-style:none;margin:0;padding-left:18px;border-left:2px solid #e3e6eb}
ul.s li{margin:2px 0}details>summary{cursor:pointer}
.n{font-family:monospace;font-weight:700}.t{font-family:monospace;color:#6b3fa0}.req{color:#a83232;font-size:12px;margin-left:4px}.d{color:#555}
.c{font-family:monospace;font-size:12px;color:#777}code{background:#eef0f3;padding:0 3px}
#err{color:#a83232}
"""

_SCRIPT = """
"use strict";
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function add(parent) {
  for (let i = 1; i < arguments.length; i++) {
    const c = arguments[i];
    if (c === null || c === undefined) continue;
    parent.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return parent;
}
let SPEC = {};
function deref(s) {
  let name = null;
  if (s && typeof s.$ref === "string" && s.$ref.indexOf("#/components/schemas/") === 0) {
    name = s.$ref.slice(21);
    s = ((SPEC.components || {}).schemas || {})[name] || {};
  }
  return [s || {}, name];
}
function typeText(s, name) {
  let t = s.type;
  if (Array.isArray(t)) t = t.join(" | ");
  if (!t && s.properties) t = "object";
  if (t === "array" && s.items) {
    const inner = deref(s.items);
    t = "array of " + (inner[1] || typeText(inner[0], null));
  }
  if (s.format) t = (t || "") + " (" + s.format + ")";
  if (name) t = name + (t ? ": " + t : "");
  return t || "any";
}
function limits(s) {
  const out = [];
  const keys = ["enum", "const", "default", "minimum", "exclusiveMinimum", "maximum",
    "exclusiveMaximum", "minLength", "maxLength", "maxItems", "pattern"];
  for (const k of keys) {
    if (s[k] !== undefined) out.push(k + " " + JSON.stringify(s[k]));
  }
  if (s.additionalProperties === false) out.push("no other members");
  return out.length ? el("span", "c", " [" + out.join(", ") + "]") : null;
}
function schemaTree(raw, depth) {
  const r = deref(raw), s = r[0];
  const head = add(el("span"), el("span", "t", typeText(s, r[1] || s.title)), limits(s));
  const box = el(r[1] ? "details" : "div");
  add(box, r[1] ? add(el("summary"), head) : head);
  if (s.description) add(box, el("div", "d", s.description));
  if (depth > 8) return box;
  const variants = s.oneOf || s.anyOf;
  if (Array.isArray(variants)) {
    const ul = el("ul", "s");
    variants.forEach(function (v, i) {
      add(ul, add(el("li"), el("span", "c", (s.oneOf ? "one of #" : "any of #") + (i + 1)),
        schemaTree(v, depth + 1)));
    });
    add(box, ul);
  }
  const props = s.properties || {};
  const required = s.required || [];
  const names = Object.keys(props);
  if (names.length) {
    const ul = el("ul", "s");
    for (const n of names) {
      const li = el("li");
      add(li, el("span", "n", n), required.indexOf(n) >= 0 ? el("span", "req", "required") : null,
        " ", schemaTree(props[n], depth + 1));
      add(ul, li);
    }
    add(box, ul);
  }
  if (s.type === "array" && s.items) {
    const it = deref(s.items)[0];
    if (it.properties || it.oneOf || it.anyOf) add(box, add(el("ul", "s"), add(el("li"),
      el("span", "c", "each item: "), schemaTree(s.items, depth + 1))));
  }
  return box;
}
function contentBlock(content) {
  const box = el("div");
  for (const media of Object.keys(content || {})) {
    add(box, el("h4", null, media));
    const schema = content[media].schema;
    add(box, schema ? schemaTree(schema, 0) : el("span", "c", "(no schema)"));
  }
  return box;
}
function operation(path, method, op) {
  const d = el("details", "op");
  d.id = method + " " + path;
  const sm = el("summary");
  add(sm, el("span", "m " + method, method.toUpperCase()), path,
    op.summary ? el("span", "sum", op.summary) : null);
  add(d, sm);
  const b = el("div", "body");
  if (op.description) {
    for (const para of op.description.split(/\\n\\s*\\n/)) add(b, el("p", null, para.trim()));
  }
  const params = op.parameters || [];
  if (params.length) {
    add(b, el("h3", null, "Parameters"));
    const ul = el("ul", "s");
    for (const p of params) {
      add(ul, add(el("li"), el("span", "n", p.name), el("span", "c", " in " + p.in),
        p.required ? el("span", "req", "required") : null, " ", schemaTree(p.schema || {}, 0),
        p.description ? el("div", "d", p.description) : null));
    }
    add(b, ul);
  }
  if (op.requestBody) {
    add(b, el("h3", null, "Request body" + (op.requestBody.required ? "" : " (optional)")));
    if (op.requestBody.description) add(b, el("div", "d", op.requestBody.description));
    add(b, contentBlock(op.requestBody.content));
  }
  const responses = op.responses || {};
  add(b, el("h3", null, "Responses"));
  for (const code of Object.keys(responses)) {
    const r = responses[code];
    add(b, add(el("div"), el("span", "n", code), " ", el("span", "d", r.description || "")));
    if (r.headers) {
      for (const h of Object.keys(r.headers)) {
        add(b, el("div", "c", "header " + h + ": " + (r.headers[h].description || "")));
      }
    }
    add(b, contentBlock(r.content));
  }
  add(d, b);
  return d;
}
function render(spec) {
  SPEC = spec;
  const info = spec.info || {};
  document.title = (info.title || "API") + " - API";
  document.getElementById("title").textContent = (info.title || "API") + " " +
    (info.version || "");
  document.getElementById("sub").textContent = "OpenAPI " + (spec.openapi || "") +
    " - the document itself: openapi.json";
  const nav = document.getElementById("nav"), ops = document.getElementById("ops");
  const methods = ["get", "put", "post", "delete", "patch", "head", "options"];
  for (const path of Object.keys(spec.paths || {})) {
    const item = spec.paths[path];
    for (const m of methods) {
      if (!item[m]) continue;
      const a = el("a", null, m.toUpperCase() + " " + path);
      a.href = "#" + encodeURIComponent(m + " " + path);
      a.addEventListener("click", function () {
        document.getElementById(m + " " + path).open = true;
      });
      add(nav, a);
      add(ops, operation(path, m, item[m]));
    }
  }
}
fetch("openapi.json", {headers: {"Accept": "application/json"}})
  .then(function (r) {
    if (!r.ok) throw new Error("openapi.json: HTTP " + r.status);
    return r.json();
  })
  .then(render)
  .catch(function (e) { document.getElementById("err").textContent = String(e); });
"""

DOCS_HTML = (
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<title>API</title><style>" + _STYLE + "</style></head>\n<body>"
    "<header><h1 id=\"title\">API</h1><p id=\"sub\"></p></header>"
    "<main><p id=\"err\"></p><nav id=\"nav\"></nav><div id=\"ops\"></div></main>"
    "<script>" + _SCRIPT + "</script></body></html>\n"
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


DOCS_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
        "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
