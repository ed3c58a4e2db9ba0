#!/usr/bin/python3
"""validate_responses.py — the response contract test: checks every answer the
integration tests received from agentd against docs/openapi.yaml.

The integration harness (tests/integration/harness.c) appends one JSON line
per answer to the file named by AGENTD_RESPONSES_FILE:
  {"method": "POST", "path": "/v1/agent?x", "status": 200,
   "headers": "<raw header block(s)>", "body": "<body text>" | null}
Each answer is matched to the document: the path (query stripped) to a path
item, or to components.responses.NotFound for a path agentd does not serve;
the method to an operation (HEAD to GET's, with no body), or to
components.responses.MethodNotAllowed; the status to one of the operation's
responses — an undocumented status fails. Then:
  * every header the response declares required must be there, and every
    declared header that is there must match its schema;
  * the Content-Type (without parameters) must be one the response lists;
  * application/json bodies are validated against the media type's schema
    with a JSON Schema Draft 2020-12 validator (OpenAPI 3.1's dialect);
  * text/event-stream bodies are split into events; each
    {"event": name, "data": <parsed data>} is validated against the media
    type schema's contentSchema, and the last event must be
    run.completed or run.failed.
Only the document's own "#/..." $refs are followed; every one must resolve.

Usage:
  validate_responses.py OPENAPI_YAML [RECORDS_FILE ...]
      Prints "ok" or "FAIL: <where>: <why>" per answer, then the
      (method, path, status) combinations seen and "N passed, M failed".
      Exits 0 only when every answer passed and at least one was read.
      --consume: rename each RECORDS_FILE to RECORDS_FILE.checked afterwards,
      so the next run validates only what the next test run recorded.
  validate_responses.py --self-test OPENAPI_YAML
      Shows the validator has teeth: known-good answers pass and each broken
      one is rejected.

Exit status: 0 success, 1 an answer failed (or none was read), 2 usage error
or an unusable document. Needs python3-jsonschema >= 4.0 and python3-yaml.
"""

import json
import os
import re
import sys

import yaml
from jsonschema import Draft202012Validator, RefResolver
from jsonschema.exceptions import RefResolutionError, SchemaError, best_match

sys.dont_write_bytecode = True  # the helper module sits in the source tree: leave it clean
from contract_json import error_path, refuse_remote, strict_json, walk

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class DocumentError(Exception):
    """The OpenAPI document cannot be used for validation."""


class Contract:
    def __init__(self, path):
        try:
            with open(path, "rb") as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise DocumentError("%s: %s" % (path, exc)) from None
        if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1"):
            raise DocumentError("%s: not an OpenAPI 3.1 document" % path)
        self.doc = doc
        handlers = {scheme: refuse_remote for scheme in ("http", "https", "file", "ftp")}
        self.resolver = RefResolver(base_uri="", referrer=doc, handlers=handlers)
        for where, node in walk(doc):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith("#"):
                    raise DocumentError("%s: $ref %r points outside the document" % (where, ref))
                try:
                    self.resolver.resolve_fragment(doc, ref[1:])
                except RefResolutionError as exc:
                    raise DocumentError("%s: $ref %r does not resolve: %s" % (where, ref, exc))
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                raise DocumentError("components.schemas.%s: %s" % (name, exc.message)) from None
        for name in ("NotFound", "MethodNotAllowed"):
            if name not in doc.get("components", {}).get("responses", {}):
                raise DocumentError("components.responses.%s is missing" % name)

    def deref(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.resolver.resolve_fragment(self.doc, node["$ref"][1:])
        return node

    def errors(self, schema, value):
        """The most relevant error of value against schema, or None."""
        return best_match(Draft202012Validator(schema, resolver=self.resolver).iter_errors(value))

    def response_for(self, method, path, status):
        """(description of what was matched, response object) or raises ValueError."""
        responses = self.doc["components"]["responses"]
        item = self.doc.get("paths", {}).get(path)
        if item is None:
            if status != 404:
                raise ValueError("path %s is not in the document, yet answered %d" % (path, status))
            return "unknown path", self.deref(responses["NotFound"])
        op = item.get("get" if method == "HEAD" else method.lower())
        if op is None:
            if status != 405:
                raise ValueError("%s %s is not in the document, yet answered %d"
                                 % (method, path, status))
            return "method not allowed", self.deref(responses["MethodNotAllowed"])
        resp = op.get("responses", {}).get(str(status))
        if resp is None:
            raise ValueError("status %d is not documented for %s %s" % (status, method, path))
        return "%s %s %d" % (method, path, status), self.deref(resp)


def parse_headers(raw):
    """The last header block of raw (after any 1xx): {lower-case name: value}."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw or "") if b.strip()]
    headers = {}
    if not blocks:
        return headers
    for line in blocks[-1].splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def parse_sse(text):
    """[(event name, data text)] of an event stream; comment lines are skipped."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = None, []
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise ValueError("unknown SSE field %r" % field)
        if name is None and not data:
            continue
        if name is None or not data:
            raise ValueError("an event without %s" % ("a name" if name is None else "data"))
        events.append((name, "\n".join(data)))
    return events


def error_text(err):
    return "%s: %s" % (error_path(err), err.message)


def check(contract, rec):
    """None when rec matches the document, else why not."""
    try:
        method, path, status = rec["method"], rec["path"].split("?")[0], int(rec["status"])
        what, resp = contract.response_for(method, path, status)
    except (KeyError, TypeError, ValueError) as exc:
        return str(exc)
    headers = parse_headers(rec.get("headers", ""))
    for name, spec in resp.get("headers", {}).items():
        spec = contract.deref(spec)
        value = headers.get(name.lower())
        if value is None:
            if spec.get("required"):
                return "%s: required header %s missing" % (what, name)
            continue
        err = contract.errors(spec.get("schema", {}), value)
        if err is not None:
            return "%s: header %s: %r: %s" % (what, name, value, err.message)
    body = rec.get("body")
    if body is None:
        return "%s: body is not UTF-8" % what
    if method == "HEAD":
        return None if body == "" else "%s: HEAD answered with a body" % what
    content = resp.get("content", {})
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in content and "*/*" in content:
        ctype = "*/*"  # documented as any (or no) media type: only the schema below applies
    if ctype not in content:
        return "%s: Content-Type %r is not one of %s" % (what, ctype, sorted(content))
    media = content[ctype]
    if ctype == "application/json":
        try:
            value = strict_json(body)
        except ValueError as exc:
            return "%s: body is not JSON: %s" % (what, exc)
        err = contract.errors(media.get("schema", {}), value)
        return None if err is None else "%s: %s" % (what, error_text(err))
    if ctype == "text/event-stream":
        try:
            events = parse_sse(body)
        except ValueError as exc:
            return "%s: %s" % (what, exc)
        if not events:
            return "%s: an event stream without events" % what
        schema = media.get("schema", {}).get("contentSchema")
        if schema is None:
            return "%s: the text/event-stream schema has no contentSchema" % what
        for i, (name, data) in enumerate(events):
            try:
                value = {"event": name, "data": strict_json(data)}
            except ValueError as exc:
                return "%s: event %d (%s): data is not JSON: %s" % (what, i, name, exc)
            err = contract.errors(schema, value)
            if err is not None:
                return "%s: event %d (%s): %s" % (what, i, name, error_text(err))
        if events[-1][0] not in ("run.completed", "run.failed"):
            return "%s: the stream ends with %s, not run.completed or run.failed" % (
                what, events[-1][0])
    return None


def read_records(paths):
    for source in paths:
        with open(source, "rb") as f:
            for number, raw in enumerate(f, 1):
                if raw.strip():
                    yield "%s:%d" % (source, number), raw


def validate(contract, paths):
    passed = failed = 0
    seen = {}
    for label, raw in read_records(paths):
        try:
            rec = strict_json(raw.decode("utf-8"))
            why = check(contract, rec)
        except (UnicodeDecodeError, ValueError) as exc:
            why = "not a record: %s" % exc
            rec = {}
        key = "%s %s %s" % (rec.get("method"), str(rec.get("path", "")).split("?")[0],
                            rec.get("status"))
        seen[key] = seen.get(key, 0) + 1
        if why is None:
            passed += 1
        else:
            failed += 1
            print("FAIL: %s: %s" % (label, why))
    for key in sorted(seen):
        print("seen %5d x %s" % (seen[key], key))
    print("%d passed, %d failed" % (passed, failed))
    if passed + failed == 0:
        print("FAIL: no answers were recorded (run the integration tests first, with "
              "AGENTD_RESPONSES_FILE set)")
    return 0 if failed == 0 and passed > 0 else 1


# ---- self-test ------------------------------------------------------------------------------

RID = "X-Request-Id: req_0123\r\n"
JSON = "Content-Type: application/json; charset=utf-8\r\n"


def rec(method, path, status, headers, body):
    return {"method": method, "path": path, "status": status,
            "headers": "HTTP/1.1 %d X\r\n%s\r\n" % (status, headers), "body": body}


ANSWER = {"id": "run_1", "request_id": "req_0123", "output": "345", "stop_reason": "end_turn",
          "iterations": 2, "degraded": [], "usage": {"input_tokens": 1, "output_tokens": 2,
                                                     "llm_calls": 2, "llm_attempts": 2},
          "tool_calls": [{"id": "t1", "name": "calculator", "ok": True, "duration_ms": 0}]}


def err(type_, **extra):
    body = {"error": {"type": type_, "message": "m"}, "request_id": "req_0123"}
    body.update(extra)
    return json.dumps(body)


def sse(*events):
    return "".join("event: %s\ndata: %s\n\n" % (n, json.dumps(d)) for n, d in events)


SSE = "Content-Type: text/event-stream\r\nCache-Control: no-store\r\n"
GOOD = [
    rec("POST", "/v1/agent", 200, RID + JSON, json.dumps(ANSWER)),
    rec("POST", "/v1/agent", 200, RID + JSON,
        json.dumps(dict(ANSWER, model="m", usage=dict(ANSWER["usage"], cache_read_input_tokens=3)))),
    rec("POST", "/v1/agent", 200, RID + SSE, ": ping\n\n" + sse(
        ("run.started", {"id": "run_1", "request_id": "req_0123"}),
        ("text.delta", {"iteration": 0, "text": "3"}),
        ("tool.started", {"id": "t1", "name": "calculator"}),
        ("tool.finished", {"id": "t1", "name": "calculator", "ok": True, "duration_ms": 1}),
        ("run.completed", ANSWER))),
    rec("POST", "/v1/agent", 200, RID + SSE, sse(
        ("run.started", {"id": "run_1", "request_id": "req_0123"}),
        ("run.failed", {"error": {"type": "deadline_exceeded", "message": "m"},
                        "request_id": "req_0123", "status": 504}))),
    rec("POST", "/v1/agent", 429, RID + JSON + "Retry-After: 1\r\n", err("budget_exceeded")),
    rec("POST", "/v1/agent", 502, RID + JSON, err("upstream_error", upstream_status=400)),
    rec("POST", "/v1/agent", 401, RID + JSON + "WWW-Authenticate: Bearer\r\n", err("unauthorized")),
    rec("GET", "/health/ready", 200, RID + JSON, json.dumps(
        {"status": "ok", "checks": {"anthropic_api": {"status": "ok", "consecutive_failures": 0},
                                    "disk_space": {"status": "ok", "min_free_bytes": 1, "path": "/"},
                                    "notes_writable": {"status": "ok"},
                                    "notes": {"status": "ok", "max_files": 0, "max_bytes": 0},
                                    "shutdown": {"status": "ok"}}})),
    rec("HEAD", "/health/live", 200, RID + JSON, ""),
    rec("GET", "/metrics", 200, RID + "Content-Type: text/plain; version=0.0.4\r\n", "x 1\n"),
    rec("GET", "/nope", 404, RID + JSON, err("not_found")),
    rec("DELETE", "/v1/agent", 405, RID + JSON + "Allow: POST\r\n", err("method_not_allowed")),
]

BAD = [
    ("200 without usage", rec("POST", "/v1/agent", 200, RID + JSON,
                              json.dumps({k: v for k, v in ANSWER.items() if k != "usage"}))),
    ("unknown stop_reason", rec("POST", "/v1/agent", 200, RID + JSON,
                                json.dumps(dict(ANSWER, stop_reason="bored")))),
    ("no X-Request-Id", rec("POST", "/v1/agent", 200, JSON, json.dumps(ANSWER))),
    ("429 without Retry-After", rec("POST", "/v1/agent", 429, RID + JSON, err("overloaded"))),
    ("error type of another status", rec("POST", "/v1/agent", 429, RID + JSON
                                         + "Retry-After: 1\r\n", err("deadline_exceeded"))),
    ("unknown field in an error", rec("POST", "/v1/agent", 400, RID + JSON,
                                      err("invalid_request", hint="x"))),
    ("error without message", rec("POST", "/v1/agent", 400, RID + JSON, json.dumps(
        {"error": {"type": "invalid_request"}, "request_id": "req_0123"}))),
    ("undocumented status", rec("POST", "/v1/agent", 418, RID + JSON, err("invalid_request"))),
    ("JSON answered as text/plain", rec("GET", "/health/live", 200,
                                        RID + "Content-Type: text/plain\r\n", '{"status":"ok"}')),
    ("live with another status", rec("GET", "/health/live", 200, RID + JSON, '{"status":"meh"}')),
    ("unknown path not 404", rec("GET", "/nope", 200, RID + JSON, "{}")),
    ("405 without Allow", rec("PUT", "/metrics", 405, RID + JSON, err("method_not_allowed"))),
    ("failed check without reason", rec("GET", "/health/ready", 503, RID + JSON, json.dumps(
        {"status": "unavailable", "checks": {
            "anthropic_api": {"status": "fail", "consecutive_failures": 3},
            "disk_space": {"status": "ok", "min_free_bytes": 1, "path": "/"},
            "notes_writable": {"status": "ok"}, "notes": {"status": "ok", "max_files": 0,
                                                          "max_bytes": 0},
            "shutdown": {"status": "ok"}}}))),
    ("stream without a last event", rec("POST", "/v1/agent", 200, RID + SSE, sse(
        ("run.started", {"id": "run_1", "request_id": "req_0123"})))),
    ("stream event with bad data", rec("POST", "/v1/agent", 200, RID + SSE, sse(
        ("text.delta", {"iteration": 0}), ("run.completed", ANSWER)))),
    ("unknown stream event", rec("POST", "/v1/agent", 200, RID + SSE, sse(
        ("run.paused", {}), ("run.completed", ANSWER)))),
    ("duplicate JSON key", rec("GET", "/health/live", 200, RID + JSON,
                               '{"status":"ok","status":"ok"}')),
    ("HEAD with a body", rec("HEAD", "/health/live", 200, RID + JSON, '{"status":"ok"}')),
]


def self_test(contract):
    failures = 0
    for r in GOOD:
        why = check(contract, r)
        if why is None:
            print("ok: accepted %s %s %d" % (r["method"], r["path"], r["status"]))
        else:
            print("FAIL: a good answer was rejected: %s" % why)
            failures += 1
    for what, r in BAD:
        why = check(contract, r)
        if why is None:
            print("FAIL: %s was accepted" % what)
            failures += 1
        else:
            print("ok: rejected %s (%s)" % (what, why))
    total = len(GOOD) + len(BAD)
    print("%d passed, %d failed" % (total - failures, failures))
    return 0 if failures == 0 else 1


def main(argv):
    args = argv[1:]
    flags = {a for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if not args or flags - {"--self-test", "--consume"} or (
            "--self-test" in flags and len(args) != 1):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        contract = Contract(args[0])
    except DocumentError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    if "--self-test" in flags:
        return self_test(contract)
    files = [f for f in args[1:] if os.path.exists(f)]
    for missing in sorted(set(args[1:]) - set(files)):
        print("note: %s does not exist (nothing recorded there)" % missing)
    try:
        status = validate(contract, files)
    except OSError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    if "--consume" in flags:
        for f in files:
            os.replace(f, f + ".checked")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
