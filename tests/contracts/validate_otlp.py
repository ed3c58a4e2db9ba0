#!/usr/bin/python3
"""validate_otlp.py — checks the OTLP/HTTP JSON bodies agentd exported against the
OpenTelemetry protocol's trace messages, then the trace they hold.

1. Decoding. Every body must decode as opentelemetry.proto.collector.trace.v1.
   ExportTraceServiceRequest with the official opentelemetry-proto definitions under the
   protobuf JSON mapping with OTLP's JSON exceptions
   (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): otlp-decode.sh, next to
   this file, runs otlp_decode.js on them with the protobufjs code generated from the published
   .proto files that @opentelemetry/otlp-transformer ships (both pinned, installed under
   .cache/otlp-proto/ on first use). It refuses unknown fields, wrong types, out-of-range enums,
   non-hex ids.
2. The trace (with --trace-id): one invoke_agent SERVER span, child of --parent
   when given (else a root); every chat and execute_tool span its child, in the
   same trace; the GenAI attributes on each; every traceparent the fake upstream
   received (--upstream, the fake's /_admin/requests JSON) names a chat or
   execute_tool span of the trace as its parent.

Usage: validate_otlp.py BODIES.jsonl [--trace-id HEX] [--parent HEX]
         [--upstream REQUESTS.json] [--tracestate VALUE] [--expect-tools N]
         [--expect-retry]
       validate_otlp.py --self-test
Exit 0 when valid, 1 with the problems on stderr.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

DECODER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otlp-decode.sh")


def decode(path, errs):
    """Runs the official-definitions decoder on the bodies in PATH; its problems go to errs."""
    r = subprocess.run([DECODER, path], capture_output=True, text=True)
    if r.returncode != 0:
        errs.extend(l for l in r.stderr.splitlines() if l.strip())
        if not r.stderr.strip():
            errs.append(f"{DECODER} exited {r.returncode}")
    else:
        print(r.stdout.strip())


def attrs(kvs):
    """KeyValue list -> {key: python value}."""
    out = {}
    for kv in kvs or []:
        v = kv["value"]
        (kind, val), = v.items()
        if kind == "intValue":
            val = int(val)
        elif kind == "arrayValue":
            val = [next(iter(x.values())) for x in val.get("values", [])]
        out[kv["key"]] = val
    return out


def check_trace(spans, a, errs):
    tr = [s for s in spans if s["traceId"] == a.trace_id]
    runs = [s for s in tr if s["name"].startswith("invoke_agent")]
    if len(runs) != 1:
        errs.append(f"trace {a.trace_id}: {len(runs)} invoke_agent spans, expected 1")
        return
    run = runs[0]
    ra = attrs(run.get("attributes"))
    if run.get("kind") != 2:
        errs.append("invoke_agent: kind is not SERVER (2)")
    if a.parent and run.get("parentSpanId") != a.parent:
        errs.append(f"invoke_agent: parent {run.get('parentSpanId')}, expected {a.parent}")
    if not a.parent and "parentSpanId" in run:
        errs.append("invoke_agent: a new trace's run span has a parent")
    for k, want in (("gen_ai.operation.name", "invoke_agent"),
                    ("gen_ai.provider.name", "anthropic")):
        if ra.get(k) != want:
            errs.append(f"invoke_agent: {k} = {ra.get(k)!r}, expected {want!r}")
    for k in ("gen_ai.request.model", "agentd.request_id", "gen_ai.usage.input_tokens",
              "gen_ai.usage.output_tokens"):
        if k not in ra:
            errs.append(f"invoke_agent: no {k}")
    chats = [s for s in tr if s["name"].startswith("chat ")]
    tools = [s for s in tr if s["name"].startswith("execute_tool ")]
    if not chats:
        errs.append("no chat span")
    if len(tools) < a.expect_tools:
        errs.append(f"{len(tools)} execute_tool spans, expected at least {a.expect_tools}")
    for s in chats + tools:
        if s.get("parentSpanId") != run["spanId"]:
            errs.append(f"{s['name']}: parent {s.get('parentSpanId')} is not the run span")
        if not int(run["startTimeUnixNano"]) <= int(s["startTimeUnixNano"]) <= \
                int(s["endTimeUnixNano"]) <= int(run["endTimeUnixNano"]):
            errs.append(f"{s['name']}: not within the run span's time")
    retried = False
    for s in chats:
        sa = attrs(s.get("attributes"))
        if s.get("kind") != 3:
            errs.append(f"{s['name']}: kind is not CLIENT (3)")
        for k, want in (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "anthropic")):
            if sa.get(k) != want:
                errs.append(f"{s['name']}: {k} = {sa.get(k)!r}, expected {want!r}")
        for k in ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.usage.input_tokens",
                  "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
                  "gen_ai.usage.cache_creation.input_tokens", "agentd.retry.count",
                  "agentd.breaker.state", "agentd.request_id"):
            if k not in sa:
                errs.append(f"{s['name']}: no {k}")
        fr = sa.get("gen_ai.response.finish_reasons")
        if not (isinstance(fr, list) and fr and all(isinstance(x, str) for x in fr)):
            errs.append(f"{s['name']}: gen_ai.response.finish_reasons {fr!r} is not a string array")
        attempts = [e for e in s.get("events", []) if e["name"] == "agentd.attempt"]
        if len(attempts) != sa.get("agentd.retry.count", -2) + 1:
            errs.append(f"{s['name']}: {len(attempts)} attempt events for "
                        f"agentd.retry.count {sa.get('agentd.retry.count')}")
        retried |= sa.get("agentd.retry.count", 0) > 0
    if a.expect_retry and not retried:
        errs.append("no chat span with agentd.retry.count > 0")
    for s in tools:
        sa = attrs(s.get("attributes"))
        if sa.get("gen_ai.operation.name") != "execute_tool" or "gen_ai.tool.name" not in sa \
                or "agentd.tool.degraded" not in sa:
            errs.append(f"{s['name']}: missing execute_tool attributes: {sorted(sa)}")
    # What the upstreams saw: the W3C header of a chat or tool span of this trace.
    if a.upstream:
        with open(a.upstream, encoding="utf-8") as f:
            reqs = json.load(f)
        callers = {s["spanId"]: s["name"] for s in chats + tools}
        seen = 0
        for r in reqs:
            if r.get("route") == "models":
                continue  # the readiness probe: no run, no trace
            tp = (r.get("headers") or {}).get("traceparent")
            if not tp:
                errs.append(f"upstream {r.get('route')} request {r.get('seq')}: no traceparent")
                continue
            m = re.match(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$", tp)
            if not m or m.group(1) != a.trace_id or m.group(2) not in callers:
                errs.append(f"upstream {r.get('route')}: traceparent {tp} names no chat/tool "
                            "span of the trace")
                continue
            kind = callers[m.group(2)].split()[0]
            if (r.get("route") == "messages") != (kind == "chat"):
                errs.append(f"upstream {r.get('route')}: parent is a {kind} span")
            if a.tracestate is not None and (r.get("headers") or {}).get("tracestate") != \
                    a.tracestate:
                errs.append(f"upstream {r.get('route')}: tracestate not passed on")
            seen += 1
        if seen == 0:
            errs.append("the upstreams saw no traceparent")


def validate(path, a):
    errs, spans = [], []
    decode(path, errs)
    if errs:
        return errs
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        body = json.loads(line)
        for rs in body.get("resourceSpans", []):
            ra = attrs(rs.get("resource", {}).get("attributes"))
            if not isinstance(ra.get("service.name"), str):
                errs.append(f"body {n}: resource without service.name")
            for ss in rs.get("scopeSpans", []):
                spans.extend(ss.get("spans", []))
    if errs:
        return errs
    if not spans:
        return ["no span received"]
    if a.trace_id:
        check_trace(spans, a, errs)
    return errs


def validate_bodies(bodies, a):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
        f.write("".join(json.dumps(b) + "\n" for b in bodies))
        f.flush()
        return validate(f.name, a)


def self_test():
    # The decoder's own cases: wrong types, unknown fields, bad ids and enums are refused.
    r = subprocess.run([DECODER, "--self-test"])
    assert r.returncode == 0, "otlp_decode.js --self-test failed"
    # And here, through validate(): a good body passes, a wrong type, an unknown field and a
    # resource without service.name do not.
    good = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "agentd"}}]},
        "scopeSpans": [{"scope": {"name": "agentd"}, "spans": [{
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
            "name": "invoke_agent agentd", "kind": 2, "startTimeUnixNano": "1",
            "endTimeUnixNano": "2", "status": {"code": 0}, "attributes": [
                {"key": "n", "value": {"intValue": "3"}},
                {"key": "r", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}}]}]}]}]}
    a = argparse.Namespace(trace_id=None)
    assert validate_bodies([good], a) == [], validate_bodies([good], a)
    for k, v in (("kind", "SPAN_KIND_SERVER"), ("name", 7), ("trace_id", "4bf9"),
                 ("startTimeUnixNano", "1.5")):
        bad = json.loads(json.dumps(good))
        bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0][k] = v
        assert validate_bodies([bad], a), f"accepted {k}={v!r}"
    bad = json.loads(json.dumps(good))
    bad["resourceSpans"][0]["resource"]["attributes"] = []
    assert validate_bodies([bad], a) == ["body 1: resource without service.name"]
    assert validate_bodies([good, {"resourceSpans": [{"resources": {}}]}], a)
    print("validate_otlp self-test: ok")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bodies", nargs="?")
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--trace-id")
    p.add_argument("--parent")
    p.add_argument("--upstream")
    p.add_argument("--tracestate")
    p.add_argument("--expect-tools", type=int, default=0)
    p.add_argument("--expect-retry", action="store_true")
    a = p.parse_args()
    if a.self_test:
        self_test()
        return 0
    errs = validate(a.bodies, a)
    for e in errs[:50]:
        print("validate_otlp: " + e, file=sys.stderr)
    if not errs:
        print("validate_otlp: ok")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
