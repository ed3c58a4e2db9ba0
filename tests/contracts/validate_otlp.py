#!/usr/bin/python3
"""validate_otlp.py — checks the OTLP/HTTP JSON bodies agentd exported against the
OpenTelemetry protocol's trace messages, then the trace they hold.

1. Schema. Every body must decode as opentelemetry.proto.collector.trace.v1.
   ExportTraceServiceRequest under the protobuf JSON mapping with OTLP's JSON
   exceptions (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):
   lowerCamelCase field names, no unknown field, traceId/spanId/parentSpanId as
   hex (not base64), 64-bit integers as decimal strings (numbers accepted), enums
   as integers. MESSAGES below is the field list (field name -> type) of
   github.com/open-telemetry/opentelemetry-proto's trace/v1/trace.proto (checked
   against commit 05e412fb), common/v1/common.proto, resource/v1/resource.proto
   and collector/trace/v1/trace_service.proto, written out by hand because no
   protobuf runtime is installed here.
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
import re
import sys

# message -> {jsonName: type}; "[]T" = repeated T; scalars: string, bool, uint32, int64,
# fixed64, fixed32, double, bytes (base64), hexid16 / hexid8 (OTLP's hex ids), enum:NAME.
MESSAGES = {
    "ExportTraceServiceRequest": {"resourceSpans": "[]ResourceSpans"},
    "ResourceSpans": {"resource": "Resource", "scopeSpans": "[]ScopeSpans", "schemaUrl": "string"},
    "Resource": {"attributes": "[]KeyValue", "droppedAttributesCount": "uint32",
                 "entityRefs": "[]EntityRef"},
    "EntityRef": {"schemaUrl": "string", "type": "string", "idKeys": "[]string",
                  "descriptionKeys": "[]string"},
    "ScopeSpans": {"scope": "InstrumentationScope", "spans": "[]Span", "schemaUrl": "string"},
    "InstrumentationScope": {"name": "string", "version": "string", "attributes": "[]KeyValue",
                             "droppedAttributesCount": "uint32"},
    "Span": {"traceId": "hexid16", "spanId": "hexid8", "traceState": "string",
             "parentSpanId": "hexid8", "flags": "fixed32", "name": "string",
             "kind": "enum:SpanKind", "startTimeUnixNano": "fixed64",
             "endTimeUnixNano": "fixed64", "attributes": "[]KeyValue",
             "droppedAttributesCount": "uint32", "events": "[]Event",
             "droppedEventsCount": "uint32", "links": "[]Link", "droppedLinksCount": "uint32",
             "status": "Status"},
    "Event": {"timeUnixNano": "fixed64", "name": "string", "attributes": "[]KeyValue",
              "droppedAttributesCount": "uint32"},
    "Link": {"traceId": "hexid16", "spanId": "hexid8", "traceState": "string",
             "attributes": "[]KeyValue", "droppedAttributesCount": "uint32", "flags": "fixed32"},
    "Status": {"message": "string", "code": "enum:StatusCode"},
    "KeyValue": {"key": "string", "value": "AnyValue"},
    "AnyValue": {"stringValue": "string", "boolValue": "bool", "intValue": "int64",
                 "doubleValue": "double", "arrayValue": "ArrayValue",
                 "kvlistValue": "KeyValueList", "bytesValue": "bytes"},
    "ArrayValue": {"values": "[]AnyValue"},
    "KeyValueList": {"values": "[]KeyValue"},
}
ONEOF = {"AnyValue"}  # exactly one field set
ENUMS = {"SpanKind": range(0, 6), "StatusCode": range(0, 3)}
HEX = {"hexid16": 32, "hexid8": 16}
INT64 = re.compile(r"^-?[0-9]+$")


def check_scalar(t, v, path, errs):
    if t == "string":
        ok = isinstance(v, str)
    elif t == "bool":
        ok = isinstance(v, bool)
    elif t in ("uint32", "fixed32"):
        ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32
    elif t in ("int64", "fixed64"):
        ok = (isinstance(v, str) and INT64.match(v) is not None) or (
            isinstance(v, int) and not isinstance(v, bool))
        if ok and t == "fixed64":
            ok = int(v) >= 0
    elif t == "double":
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif t == "bytes":
        ok = isinstance(v, str) and re.match(r"^[A-Za-z0-9+/=_-]*$", v) is not None
    elif t in HEX:
        ok = isinstance(v, str) and re.match("^[0-9a-f]{%d}$" % HEX[t], v) is not None \
            and set(v) != {"0"}
    elif t.startswith("enum:"):
        ok = isinstance(v, int) and not isinstance(v, bool) and v in ENUMS[t[5:]]
    else:
        raise ValueError(t)
    if not ok:
        errs.append(f"{path}: {json.dumps(v)[:60]} is not a valid {t}")


def check_message(name, obj, path, errs):
    if not isinstance(obj, dict):
        errs.append(f"{path}: expected a {name} object")
        return
    fields = MESSAGES[name]
    for k, v in obj.items():
        if k not in fields:
            errs.append(f"{path}.{k}: no such field in {name}")
            continue
        t = fields[k]
        if t.startswith("[]"):
            if not isinstance(v, list):
                errs.append(f"{path}.{k}: expected an array")
                continue
            for i, item in enumerate(v):
                check_value(t[2:], item, f"{path}.{k}[{i}]", errs)
        else:
            check_value(t, v, f"{path}.{k}", errs)
    if name in ONEOF and len(obj) != 1:
        errs.append(f"{path}: {name} must set exactly one field, has {sorted(obj)}")


def check_value(t, v, path, errs):
    if t in MESSAGES:
        check_message(t, v, path, errs)
    else:
        check_scalar(t, v, path, errs)


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


def validate(lines, a):
    errs, spans = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as e:
            errs.append(f"body {n}: not JSON: {e}")
            continue
        check_message("ExportTraceServiceRequest", body, f"body{n}", errs)
        for rs in body.get("resourceSpans", []) if isinstance(body, dict) else []:
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


def self_test():
    good = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "agentd"}}]},
        "scopeSpans": [{"scope": {"name": "agentd"}, "spans": [{
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
            "name": "invoke_agent agentd", "kind": 2, "startTimeUnixNano": "1",
            "endTimeUnixNano": "2", "status": {"code": 0}, "attributes": [
                {"key": "n", "value": {"intValue": "3"}},
                {"key": "r", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}}]}]}]}]}
    a = argparse.Namespace(trace_id=None)
    assert validate([json.dumps(good)], a) == [], validate([json.dumps(good)], a)
    span = good["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    broken = [("traceId", "4BF92F3577B34DA6A3CE929D0E0E4736"), ("spanId", "AA=="),
              ("kind", "SPAN_KIND_SERVER_X"), ("kind", 9), ("startTimeUnixNano", "1.5"),
              ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), ("status", {"code": 7}),
              ("attributes", [{"key": "n", "value": {"intValue": "x"}}]),
              ("attributes", [{"key": "n", "value": {"intValue": "1", "stringValue": "1"}}]),
              ("droppedAttributesCount", -1), ("traceId", "0" * 32)]
    for k, v in broken:
        bad = json.loads(json.dumps(good))
        bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0][k] = v
        assert validate([json.dumps(bad)], a), f"accepted {k}={v!r}"
    assert validate([json.dumps({"resourceSpans": [{"scopeSpans": [], "resources": {}}]})], a)
    assert span  # the good span stayed intact
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
    with open(a.bodies, encoding="utf-8") as f:
        errs = validate(f.readlines(), a)
    for e in errs[:50]:
        print("validate_otlp: " + e, file=sys.stderr)
    if not errs:
        print("validate_otlp: ok")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
