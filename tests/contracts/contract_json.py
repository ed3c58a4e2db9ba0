"""contract_json.py — what the two contract validators (validate_requests.py,
validate_responses.py) share: strict JSON parsing, walking a document, refusing
remote $refs, and naming where in a body an error is."""

import json

from jsonschema.exceptions import RefResolutionError


def strict_json(text):
    """json.loads without the extensions Python accepts but JSON forbids."""

    def no_duplicates(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError("duplicate key %r" % key)
            obj[key] = value
        return obj

    def no_constant(name):
        raise ValueError("%s is not JSON" % name)

    return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)


def walk(node, path="#"):
    """Yields (json-pointer, dict) for every object in the document."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, path + "/" + str(key).replace("~", "~0").replace("/", "~1"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, "%s/%d" % (path, index))


def refuse_remote(uri):
    raise RefResolutionError("refusing to fetch %s: only local $refs are allowed" % uri)


def error_path(err):
    path = "$"
    for part in err.absolute_path:
        path += "[%d]" % part if isinstance(part, int) else "." + str(part)
    return path
