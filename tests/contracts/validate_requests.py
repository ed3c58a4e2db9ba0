#!/usr/bin/python3
"""validate_requests.py — the request contract test: checks Messages API
request bodies against the official OpenAPI description.

Each body is validated against #/components/schemas/CreateMessageParams,
resolved inside the OpenAPI document, with a JSON Schema Draft 2020-12
validator (OpenAPI 3.1's dialect). Only the document's own "#/..." $refs are
followed — every one of them must resolve, and nothing is fetched.

Usage:
  validate_requests.py OPENAPI_JSON [BODIES_FILE ...]
      Reads request bodies, one JSON document per line, from the files or from
      stdin; blank lines are skipped. Prints "ok" or "FAIL: line N: <path>:
      <message>" per body, then "N passed, M failed". Exits 0 only when every
      body passed and at least one was read.
  validate_requests.py --self-test OPENAPI_JSON
      Shows the validator has teeth: a known-good body must pass and each
      deliberately broken body must be rejected for the expected reason.

Exit status: 0 success, 1 a body failed (or none was read, or a self-test
case misbehaved), 2 usage error or an unusable OpenAPI document.

Needs python3-jsonschema >= 4.0 (Debian bookworm ships 4.10).
"""

import copy
import sys

from jsonschema import Draft202012Validator, RefResolver
from jsonschema.exceptions import RefResolutionError, SchemaError, best_match

sys.dont_write_bytecode = True  # the helper module sits in the source tree: leave it clean
from contract_json import error_path, refuse_remote, strict_json, walk

SCHEMA_NAME = "CreateMessageParams"
SCHEMA_POINTER = "#/components/schemas/" + SCHEMA_NAME


class DocumentError(Exception):
    """The OpenAPI document cannot be used for validation."""


def repair_null_types(doc):
    """The published document has `"type": null` (components.schemas.Model).
    That is not JSON Schema — "type" must be a string or an array — and makes
    the validator crash; the generator meant "no type constraint" (the anyOf
    beside it constrains the value). Dropping the keyword is the faithful
    reading; every change is reported and the result is checked against the
    metaschema afterwards, so nothing else can slip through this way."""
    repaired = []
    for path, node in walk(doc):
        if "type" in node and node["type"] is None:
            del node["type"]
            repaired.append(path)
    return repaired


def check_refs(doc, resolver):
    """Every $ref must be local ("#/...") and resolve inside the document."""
    for path, node in walk(doc):
        ref = node.get("$ref")
        if ref is None or not isinstance(ref, str):
            continue
        if not ref.startswith("#"):
            raise DocumentError("%s: $ref %r points outside the document" % (path, ref))
        try:
            resolver.resolve_fragment(doc, ref[1:])
        except RefResolutionError as exc:
            raise DocumentError("%s: $ref %r does not resolve: %s" % (path, ref, exc)) from None


def load_validator(openapi_path):
    try:
        with open(openapi_path, "rb") as f:
            doc = strict_json(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DocumentError("%s: %s" % (openapi_path, exc)) from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1"):
        raise DocumentError("%s: not an OpenAPI 3.1 document" % openapi_path)
    dialect = doc.get("jsonSchemaDialect")
    if dialect not in (None, "https://json-schema.org/draft/2020-12/schema",
                       "https://spec.openapis.org/oas/3.1/dialect/base"):
        raise DocumentError("%s: unsupported jsonSchemaDialect %r" % (openapi_path, dialect))

    for path in repair_null_types(doc):
        print("note: %s: dropped invalid \"type\": null (no type constraint)" % path,
              file=sys.stderr)

    schemas = doc.get("components", {}).get("schemas", {})
    if SCHEMA_NAME not in schemas:
        raise DocumentError("%s: %s not found" % (openapi_path, SCHEMA_POINTER))
    for name, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise DocumentError("components.schemas.%s is not a valid 2020-12 schema: %s"
                                % (name, exc.message)) from None

    handlers = {scheme: refuse_remote for scheme in ("http", "https", "file", "ftp")}
    resolver = RefResolver(base_uri="", referrer=doc, handlers=handlers)
    check_refs(doc, resolver)
    return Draft202012Validator(schemas[SCHEMA_NAME], resolver=resolver)


def plausible_branch(errors):
    """False when a branch of an anyOf/oneOf failed only because it is for
    another JSON type or another block "type" (its discriminator)."""
    for err in errors:
        rel = list(err.relative_path)
        if not rel and err.validator == "type":
            return False
        if rel == ["type"] and err.validator in ("const", "enum"):
            return False
    return True


def explain(err):
    """"is not valid under any of the given schemas" names no culprit: step
    into the one branch the instance was evidently meant for, if there is
    exactly one, and report what is wrong there."""
    while err.validator in ("anyOf", "oneOf") and err.context:
        branches = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [errs for errs in branches.values() if plausible_branch(errs)]
        if len(candidates) != 1:
            break
        err = best_match(iter(candidates[0]))
    return err


def first_error(validator, body):
    """None when body is valid, else the most relevant error."""
    err = best_match(validator.iter_errors(body))
    return None if err is None else explain(err)


def all_errors(validator, body):
    """Every error, including those nested inside anyOf/oneOf branches."""
    pending = list(validator.iter_errors(body))
    while pending:
        err = pending.pop()
        yield err
        pending.extend(err.context or ())


def read_lines(paths):
    """Yields (label, raw bytes) per non-blank line."""
    sources = paths or ["-"]
    for source in sources:
        stream = sys.stdin.buffer if source == "-" else open(source, "rb")
        try:
            for number, raw in enumerate(stream, 1):
                if raw.strip():
                    label = "line %d" % number if len(sources) == 1 else "%s:%d" % (source, number)
                    yield label, raw
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


# The API refuses a request with more cache_control breakpoints than this (a rule the schema
# cannot express).
MAX_CACHE_BREAKPOINTS = 4


def count_cache_breakpoints(node):
    if isinstance(node, dict):
        here = 1 if node.get("cache_control") is not None else 0
        return here + sum(count_cache_breakpoints(v) for v in node.values())
    if isinstance(node, list):
        return sum(count_cache_breakpoints(v) for v in node)
    return 0


def validate_stream(validator, paths):
    passed = failed = 0
    for label, raw in read_lines(paths):
        try:
            body = strict_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            print("FAIL: %s: not JSON: %s" % (label, exc))
            failed += 1
            continue
        err = first_error(validator, body)
        breakpoints = count_cache_breakpoints(body)
        if err is None and breakpoints > MAX_CACHE_BREAKPOINTS:
            print("FAIL: %s: %d cache_control breakpoints (the API allows %d)"
                  % (label, breakpoints, MAX_CACHE_BREAKPOINTS))
            failed += 1
        elif err is None:
            print("ok")
            passed += 1
        else:
            print("FAIL: %s: %s: %s" % (label, error_path(err), err.message))
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


GOOD_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": "Be brief.",
    "temperature": 0.5,
    "tools": [{"name": "calculator", "description": "Evaluates arithmetic.",
               "input_schema": {"type": "object",
                                "properties": {"expression": {"type": "string"}},
                                "required": ["expression"]}}],
    "messages": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me compute."},
            {"type": "tool_use", "id": "toolu_1", "name": "calculator",
             "input": {"expression": "2+2"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4"}]},
    ],
}


def broken(mutate):
    body = copy.deepcopy(GOOD_BODY)
    mutate(body)
    return body


def _set(path, value):
    def mutate(body):
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(body):
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


# (what, mutation, expected error location, expected failing keyword)
SELF_TEST_CASES = [
    ("missing model", _delete(["model"]), [], "required"),
    ("model as a number", _set(["model"], 42), ["model"], "type"),
    ("max_tokens as a string", _set(["max_tokens"], "1024"), ["max_tokens"], "type"),
    ("max_tokens of 0", _set(["max_tokens"], 0), ["max_tokens"], "minimum"),
    ("message with role system", _set(["messages", 0, "role"], "system"),
     ["messages", 0, "role"], "enum"),
    ("tool without input_schema", _delete(["tools", 0, "input_schema"]), ["tools", 0],
     "required"),
    ("temperature above 1", _set(["temperature"], 1.5), ["temperature"], "maximum"),
    ("unknown top-level field", _set(["stream_mode"], True), [], "additionalProperties"),
    ("empty assistant text block", _set(["messages", 1, "content", 0, "text"], ""),
     ["messages", 1, "content", 0, "text"], "minLength"),
    ("cache_control of an unknown type",
     _set(["messages", 1, "content", 0, "cache_control"], {"type": "persistent"}),
     ["messages", 1, "content", 0, "cache_control", "type"], "const"),
    ("cache_control with an unknown ttl",
     _set(["tools", 0, "cache_control"], {"type": "ephemeral", "ttl": "1d"}),
     ["tools", 0, "cache_control", "ttl"], "enum"),
    ("tool_result with is_error as a string",
     _set(["messages", 2, "content", 0, "is_error"], "yes"),
     ["messages", 2, "content", 0, "is_error"], "type"),
]


EPHEMERAL = {"type": "ephemeral"}


def with_cache(body):
    """GOOD_BODY with the breakpoints agentd places: last tool, system, last user messages."""
    body = copy.deepcopy(body)
    body["tools"][-1]["cache_control"] = dict(EPHEMERAL)
    body["system"] = [{"type": "text", "text": body["system"], "cache_control": dict(EPHEMERAL)}]
    body["messages"][0]["content"] = [{"type": "text", "text": body["messages"][0]["content"],
                                       "cache_control": dict(EPHEMERAL)}]
    body["messages"][2]["content"][-1]["cache_control"] = {"type": "ephemeral", "ttl": "5m"}
    return body


def self_test(validator):
    failures = 0
    for what, body in (("baseline body", GOOD_BODY), ("cached body", with_cache(GOOD_BODY))):
        err = first_error(validator, body)
        if err is None and count_cache_breakpoints(body) <= MAX_CACHE_BREAKPOINTS:
            print("ok: %s accepted" % what)
        else:
            print("FAIL: %s rejected: %s" % (what, "too many breakpoints" if err is None
                                            else "%s: %s" % (error_path(err), err.message)))
            failures += 1
    cached = with_cache(GOOD_BODY)
    cached["messages"][1]["content"][0]["cache_control"] = dict(EPHEMERAL)
    if count_cache_breakpoints(cached) > MAX_CACHE_BREAKPOINTS:
        print("ok: rejected five cache breakpoints")
    else:
        print("FAIL: five cache breakpoints were accepted")
        failures += 1

    for what, mutate, where, keyword in SELF_TEST_CASES:
        body = broken(mutate)
        errors = list(all_errors(validator, body))
        hit = [e for e in errors if list(e.absolute_path) == where and e.validator == keyword]
        if hit:
            print("ok: rejected %s (%s: %s)" % (what, error_path(hit[0]), hit[0].message))
        elif errors:
            err = best_match(iter(errors))
            print("FAIL: %s rejected for another reason: %s: %s"
                  % (what, error_path(err), err.message))
            failures += 1
        else:
            print("FAIL: %s was accepted" % what)
            failures += 1
    total = len(SELF_TEST_CASES) + 3
    print("%d passed, %d failed" % (total - failures, failures))
    return 0 if failures == 0 else 1


def main(argv):
    args = argv[1:]
    selftest = "--self-test" in args
    if selftest:
        args.remove("--self-test")
    if not args or (selftest and len(args) != 1) or any(a.startswith("--") for a in args):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        validator = load_validator(args[0])
    except DocumentError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    if selftest:
        return self_test(validator)
    try:
        return validate_stream(validator, args[1:])
    except OSError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
