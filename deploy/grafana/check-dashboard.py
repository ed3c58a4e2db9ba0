#!/usr/bin/python3
"""check-dashboard.py — checks deploy/grafana/agentd.json, the Grafana dashboard.

  check-dashboard.py DASHBOARD [--promtool] [--metrics URL|FILE] [--readme README]

Always: the dashboard's structure — every panel has a unique id, a title, a
description (what it answers), the ${datasource} Prometheus datasource and at
least one PromQL target.
--promtool  every PromQL expression (panel targets and query variables), with
            the Grafana variables replaced by sample values, becomes a recording
            rule of one rule file, checked with `promtool check rules` (parse
            errors, unknown functions, type errors all fail).
--metrics   every metric the expressions use is in the exposition at URL (a
            live agentd's /metrics) or FILE: a series name, or a histogram's
            _bucket/_sum/_count.
--readme    every panel title appears in README (the section on the dashboard
            says what each panel answers).
--self-test shows the metric check and the rule check fail when they should.

Exit status 0 when every check passed, 1 otherwise, 2 usage error.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

# Sample values of the Grafana variables, so each expression is plain PromQL.
VARIABLES = {
    "__rate_interval": "2m",
    "__interval": "30s",
    "__range": "6h",
    "namespace": ".*",
}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2", "start", "end"}


def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            raise ValueError("unknown Grafana variable $%s in %r" % (name, expr))
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def metric_names(expr):
    """The metric names an expression selects (PromQL, variables substituted)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    # label lists of by/without/on/ignoring/group_left/group_right
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if word.lower() in KEYWORDS:
            continue
        start = m.start()
        if start > 0 and (s[start - 1].isdigit() or s[start - 1] == "."):
            continue  # part of a number such as 1e3
        names.add(word)
    return names


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows


def expressions(dash):
    """[(where, expr)] of every PromQL expression in the dashboard."""
    out = []
    for p in panels_of(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(("panel %r target %s" % (p.get("title"), t.get("refId")), t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q or "")
            out.append(("variable %s" % v.get("name"), m.group(1) if m else q))
    return out


def check_structure(dash):
    problems = []
    ids = set()
    for p in panels_of(dash):
        if p.get("type") == "row":
            continue
        title = p.get("title") or "(untitled)"
        if not p.get("title"):
            problems.append("a panel without a title")
        if len(p.get("description", "")) < 20:
            problems.append("panel %r: no description of what it answers" % title)
        if p.get("id") in ids:
            problems.append("panel %r: duplicate id %s" % (title, p.get("id")))
        ids.add(p.get("id"))
        ds = p.get("datasource") or {}
        if ds.get("uid") != "${datasource}" or ds.get("type") != "prometheus":
            problems.append("panel %r: datasource is not ${datasource}" % title)
        if not any(t.get("expr") for t in p.get("targets", [])):
            problems.append("panel %r: no PromQL target" % title)
    if not ids:
        problems.append("no panels")
    return problems


def check_promtool(exprs):
    groups = {"groups": [{"name": "agentd_dashboard", "rules": []}]}
    rules = groups["groups"][0]["rules"]
    for i, (where, expr) in enumerate(exprs):
        rules.append({"record": "agentd_dashboard:expr_%d" % i, "expr": substitute(expr)})
    fd, path = tempfile.mkstemp(suffix=".yml")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(groups, f, indent=1)  # JSON is YAML
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
    except FileNotFoundError:
        return ["promtool not found (apt-get install prometheus; scripts/deps.sh --test)"]
    finally:
        os.unlink(path)
    if r.returncode != 0:
        return ["promtool check rules: " + (r.stdout + r.stderr).strip()]
    print("promtool check rules: %d expressions OK" % len(rules))
    return []


def exposition(source):
    if re.match(r"https?://", source):
        with urllib.request.urlopen(source, timeout=10) as r:
            return r.read().decode("utf-8")
    with open(source, encoding="utf-8") as f:
        return f.read()


def exposed_names(text):
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def check_metrics(exprs, text):
    have = exposed_names(text)
    problems = []
    used = set()
    for where, expr in exprs:
        for name in sorted(metric_names(substitute(expr))):
            used.add(name)
            if name not in have:
                problems.append("%s: metric %s is not in /metrics" % (where, name))
    print("metrics used by the dashboard: %d, all checked against %d exposed series names"
          % (len(used), len(have)))
    return problems


def check_readme(dash, readme):
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    return ["README does not describe panel %r" % p["title"]
            for p in panels_of(dash) if p.get("type") != "row" and p["title"] not in text]


def self_test():
    failures = 0
    cases = [
        ('sum by (outcome) (rate(agentd_runs_total{outcome!~"ok"}[5m]))', {"agentd_runs_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[2m]))) / on (pod) group_left y",
         {"x_bucket", "y"}),
        ("sum(rate(a[1m])) * 3600 + 1e3 and b offset 5m", {"a", "b"}),
    ]
    for expr, want in cases:
        got = metric_names(expr)
        if got != want:
            print("FAIL: metric_names(%r) = %s, want %s" % (expr, sorted(got), sorted(want)))
            failures += 1
    exprs = [("p", "rate(agentd_runs_total[5m])"), ("q", "agentd_missing_family")]
    if len(check_metrics(exprs, "agentd_runs_total{outcome=\"ok\"} 1\n")) != 1:
        print("FAIL: a metric missing from /metrics was not reported")
        failures += 1
    if not check_promtool([("p", "sum(rate(agentd_runs_total[5m])")]):
        print("FAIL: promtool accepted a broken expression")
        failures += 1
    print("self-test: %s" % ("FAIL" if failures else "ok"))
    return 1 if failures else 0


def main(argv):
    args = argv[1:]
    if args == ["--self-test"]:
        return self_test()
    if not args or args[0].startswith("--"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    dash_path, opts = args[0], args[1:]
    try:
        dash = load(dash_path)
    except (OSError, ValueError) as exc:
        print("error: %s: %s" % (dash_path, exc), file=sys.stderr)
        return 2
    exprs = expressions(dash)
    problems = check_structure(dash)
    i = 0
    while i < len(opts):
        opt = opts[i]
        if opt == "--promtool":
            problems += check_promtool(exprs)
        elif opt in ("--metrics", "--readme") and i + 1 < len(opts):
            i += 1
            try:
                if opt == "--metrics":
                    problems += check_metrics(exprs, exposition(opts[i]))
                else:
                    problems += check_readme(dash, opts[i])
            except (OSError, ValueError) as exc:
                problems.append("%s %s: %s" % (opt, opts[i], exc))
        else:
            print(__doc__.strip(), file=sys.stderr)
            return 2
        i += 1
    for p in problems:
        print("FAIL: " + p)
    print("%s: %d panels, %d expressions: %s" % (dash_path, sum(1 for _ in panels_of(dash)),
                                                  len(exprs), "FAIL" if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
