#!/usr/bin/python3
"""check-layers.py — keeps agentd's source tree free of import circles and layer
violations, so the module structure stays a one-way stack that can be read,
tested and replaced module by module.

It builds a dependency graph whose nodes are the files src/**/*.c:
  * include edges: A.c -> B.c when A.c includes "agentd/X.h" and X.h is owned
    by B.c. A header's owner is the .c file whose FIRST #include "agentd/..."
    is that header (every module starts by including its own header). A header
    owned by no .c (type-only) is a node of its own, include/agentd/X.h. A
    header including another makes an edge owner(X) -> owner(Y) as well.
  * call edges (with a meson build directory): A.c -> B.c when A's object file
    has an undefined symbol that B's object defines (nm types T, D, B, R).
    Objects are <build>/**/<src path with '/' -> '_'>.o, e.g.
    <build>/agentd.p/src_engine_call.c.o.
Problems reported:
  * import circle: a strongly connected component of more than one node (self
    edges ignored): a shortest cycle through each of its files, then any other
    edge inside it, each edge with its reasons (headers included, symbols used);
  * server header: a file under src/{engine,tools,llm,store,resilience}/ that
    includes, directly or through headers, a header owned by src/server/;
  * obs layer: a file under src/obs/ that includes, directly or through
    headers, a header not owned by src/obs/ or src/core/ and not in
    CORE_HEADERS.

Usage: check-layers.py [--nm NM] SOURCE_ROOT [BUILD_DIR]
       e.g. scripts/check-layers.py . build; meson runs it as `meson test --suite layers`,
       and tests/layers/self_test.sh shows on fixture trees that it fails when it should.
Exit: 0 clean (one summary line on stdout); 1 problems (report on stderr);
2 usage error (bad directory, no objects in BUILD_DIR, nm failed).
"""
import argparse
import collections
import glob
import os
import re
import subprocess
import sys

# Headers obs/ may include besides those owned by src/obs/ or src/core/ files:
# the shared vocabulary, type-only or on its way to src/core/ (clock.h is still
# owned by src/engine/clock.c). A listed header that does not exist is never seen.
CORE_HEADERS = {"vocab.h", "clock.h", "text.h"}
OBS, OBS_MAY_USE = "src/obs/", ("src/obs/", "src/core/")
SERVER = "src/server/"
BELOW_SERVER = ("src/engine/", "src/tools/", "src/llm/", "src/store/", "src/resilience/")
INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]agentd/([^">]+)[">]', re.M)


class UsageError(Exception):
    pass


def includes(path):
    """The agentd/ headers a file includes, in order, without the agentd/."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return INCLUDE.findall(f.read())


def scan(root):
    """(c files, their direct includes, header -> its includes, header -> owner)."""
    cfiles = sorted(os.path.relpath(p, root).replace(os.sep, "/")
                    for p in glob.glob(os.path.join(root, "src", "**", "*.c"), recursive=True))
    cinc = {c: includes(os.path.join(root, c)) for c in cfiles}
    hdir = os.path.join(root, "include", "agentd")
    hinc = {os.path.relpath(p, hdir).replace(os.sep, "/"): includes(p)
            for p in glob.glob(os.path.join(hdir, "**", "*.h"), recursive=True)}
    claims = collections.defaultdict(list)
    for c in cfiles:
        if cinc[c]:
            claims[cinc[c][0]].append(c)
    owner = {}
    for h, cs in claims.items():
        # main.c starts with app.h too: app.c, named like the header, owns it.
        named = [c for c in cs if stem(c) == stem(h)]
        owner[h] = (named or cs)[0]
        if len(cs) > 1 and len(named) != 1:
            print(f"check-layers: warning: agentd/{h} is the first include of "
                  f"{', '.join(cs)}; {owner[h]} owns it", file=sys.stderr)
    return cfiles, cinc, hinc, owner


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def add(edges, a, b, why):
    if a != b and why not in edges[a][b]:
        edges[a][b].append(why)


def call_edges(build, cfiles, nm, edges):
    """Adds an edge per symbol one src/ object uses and another defines."""
    by_object = {c.replace("/", "_") + ".o": c for c in cfiles}
    objects = collections.defaultdict(list)
    for p in sorted(glob.glob(os.path.join(build, "**", "*.o"), recursive=True)):
        if os.path.basename(p) in by_object:
            objects[by_object[os.path.basename(p)]].append(p)
    if not objects:
        raise UsageError(f"no object files of src/*.c under {build} (build it first)")
    defined, used = {}, collections.defaultdict(set)
    for c, paths in sorted(objects.items()):
        for p in paths:
            try:
                out = subprocess.run([nm, "-P", p], capture_output=True, text=True,
                                     check=True).stdout
            except (OSError, subprocess.CalledProcessError) as e:
                raise UsageError(f"{nm} -P {p}: {e}")
            for line in out.splitlines():
                f = line.split()
                if len(f) >= 2 and f[1] == "U":
                    used[c].add(f[0])
                elif len(f) >= 2 and f[1] in ("T", "D", "B", "R"):
                    defined.setdefault(f[0], (c, f[1]))
    for a in sorted(used):
        for sym in sorted(used[a]):
            if sym in defined:
                b, kind = defined[sym]
                add(edges, a, b, ("calls" if kind == "T" else "uses", sym))
    return len(objects)


def why(reasons):
    """[(includes, agentd/x.h), (calls, f), (calls, g)] -> "includes agentd/x.h; calls f, g"."""
    verbs = collections.defaultdict(list)
    for verb, what in reasons:
        verbs[verb].append(what)
    return "; ".join(f"{v} {', '.join(w)}" if v else "; ".join(w) for v, w in verbs.items())


def sccs(nodes, edges):
    """Tarjan's strongly connected components, iterative."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(edges[root])))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while not comp or comp[-1] != v:
                        comp.append(stack.pop())
                        on_stack.discard(comp[-1])
                    out.append(sorted(comp))
    return out


def shortest_cycle(start, comp, edges):
    """A shortest path start -> ... -> start inside comp (breadth first)."""
    prev, queue = {start: None}, collections.deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(edges[v]):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w in comp and w not in prev:
                prev[w] = v
                queue.append(w)
    return [start]


def reached(direct, hinc):
    """Every header a file includes directly or through headers -> include chain."""
    chain, queue = {}, collections.deque()
    for h in direct:
        if h not in chain:
            chain[h] = [h]
            queue.append(h)
    while queue:
        h = queue.popleft()
        for y in hinc.get(h, ()):
            if y not in chain:
                chain[y] = chain[h] + [y]
                queue.append(y)
    return chain


def layer_violations(cfiles, cinc, hinc, owner):
    out = []
    for c in cfiles:
        below, obs = c.startswith(BELOW_SERVER), c.startswith(OBS)
        if not (below or obs):
            continue
        for h, chain in sorted(reached(cinc[c], hinc).items()):
            via = " -> ".join("agentd/" + x for x in chain)
            o = owner.get(h)
            if below and o and o.startswith(SERVER):
                out.append(f"server header: {c} includes {via}, owned by {o} "
                           f"(engine/tools/llm/store/resilience must not depend on the server)")
            if obs and not (o and o.startswith(OBS_MAY_USE)) and h not in CORE_HEADERS:
                whose = f"owned by {o}" if o else "a type-only header not in CORE_HEADERS"
                out.append(f"obs layer: {c} includes {via}, {whose} "
                           f"(obs may use only obs/, core/ and CORE_HEADERS)")
    return out


def circle_report(circles, edges):
    """Each circle: a shortest cycle through each of its files, then its other edges."""
    report = []
    for comp in sorted(circles):
        cycles = {}
        for v in comp:
            cyc = shortest_cycle(v, set(comp), edges)[:-1]
            i = cyc.index(min(cyc))
            cycles.setdefault(tuple(cyc[i:] + cyc[:i]), None)
        lines = [c[0] + "".join(f" -> {b} ({why(edges[a][b])})"
                                for a, b in zip(c, c[1:] + (c[0],))) for c in cycles]
        if len(comp) == 2:
            report.append("import circle: " + lines[0])
            continue
        report.append(f"import circle of {len(comp)} files: {', '.join(comp)}")
        report += ["  " + line for line in lines]
        covered = {(a, b) for c in cycles for a, b in zip(c, c[1:] + (c[0],))}
        rest = [(a, b) for a in comp for b in sorted(edges[a]) if b in comp and (a, b) not in covered]
        report += [f"  and {a} -> {b} ({why(edges[a][b])})" for a, b in rest]
    return report


def main(argv):
    ap = argparse.ArgumentParser(description="Checks src/ for import circles and layer violations.")
    ap.add_argument("root", help="source root (holds src/ and include/agentd/)")
    ap.add_argument("build", nargs="?", help="meson build directory: adds call edges from nm")
    ap.add_argument("--nm", default=os.environ.get("NM", "nm"), help="nm program (default: $NM or nm)")
    args = ap.parse_args(argv)
    try:
        if not os.path.isdir(os.path.join(args.root, "src")):
            raise UsageError(f"{args.root}: no src/ directory")
        if args.build is not None and not os.path.isdir(args.build):
            raise UsageError(f"{args.build}: not a directory")
        cfiles, cinc, hinc, owner = scan(args.root)
        if not cfiles:
            raise UsageError(f"{args.root}: no src/**/*.c files")
        edges = collections.defaultdict(lambda: collections.defaultdict(list))
        node = lambda h: owner.get(h, "include/agentd/" + h)  # noqa: E731
        for c in cfiles:
            for h in cinc[c]:
                add(edges, c, node(h), ("includes", "agentd/" + h))
        for h in sorted(hinc):
            for y in hinc[h]:
                add(edges, node(h), node(y), ("", f"agentd/{h} includes agentd/{y}"))
        objects = call_edges(args.build, cfiles, args.nm, edges) if args.build else 0
    except UsageError as e:
        print(f"check-layers: {e}", file=sys.stderr)
        return 2

    nodes = sorted(set(cfiles) | set(edges) | {b for a in edges for b in edges[a]})
    circles = [comp for comp in sccs(nodes, edges) if len(comp) > 1]
    report = circle_report(circles, edges)
    violations = layer_violations(cfiles, cinc, hinc, owner)
    report += violations
    n_edges = sum(len(edges[a]) for a in edges)
    summary = (f"layers: {count(len(cfiles), 'file')}, {count(n_edges, 'edge')} "
               f"({count(objects, 'object') if objects else 'includes only'}), "
               f"{count(len(circles), 'circle')}, {count(len(violations), 'violation')}")
    if report:
        print("\n".join(report + [summary]), file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
