#!/usr/bin/env bash
# validate-manifests.sh — checks the Kubernetes manifests under deploy/ (or the
# directory given) offline, so CI catches a broken manifest before a cluster does:
#   1. schema: every object against the Kubernetes OpenAPI schemas, compiled to
#      JSON-schema validators by the npm package kubernetes-models (types,
#      required fields, enums, formats);
#   2. strict fields: the same objects type-checked by TypeScript against
#      kubernetes-types, whose object-literal checks reject unknown fields
#      (a typo such as `readinesProbe` passes a schema without
#      additionalProperties but is dropped or refused by the API server);
#   3. render: `kubectl kustomize` (or Debian's kubernetes-client) renders the
#      kustomization, and the rendered objects go through 1 and 2 again.
# Objects of API groups outside Kubernetes (custom resources) are reported and
# skipped, except the Prometheus Operator's (monitoring.coreos.com: PodMonitor...),
# validated like built-in objects with @kubernetes-models/prometheus-operator; in the top directory every YAML document must be a Kubernetes object,
# in subdirectories documents without apiVersion/kind (e.g. Prometheus config)
# are skipped.
#
# Usage: scripts/validate-manifests.sh [DIR]      (default: deploy/)
# Installs what it needs: npm packages into .cache/validate-manifests/ (pinned
# versions, reinstalled only when the pins change), kubectl from Debian when no
# kubectl is on PATH. Exit status 0 only when everything is valid; the last
# line is "N passed, M failed" (one per validated object).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(cd "${1:-$ROOT/deploy}" && pwd)
CACHE=${VALIDATE_MANIFESTS_CACHE:-$ROOT/.cache/validate-manifests}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s%N)
elapsed() { printf '%5.1fs' "$(($(date +%s%N) - T0))e-9"; }
say() { echo "[$(elapsed)] $*"; }

install_debs() {
    say "installing Debian packages: $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    install_debs nodejs npm
fi

# ---- npm packages (pinned) ----------------------------------------------------
mkdir -p "$CACHE"
PKG='{
  "name": "agentd-validate-manifests",
  "private": true,
  "type": "module",
  "dependencies": {
    "@kubernetes-models/prometheus-operator": "6.0.0",
    "kubernetes-models": "5.1.0",
    "kubernetes-types": "1.30.0",
    "typescript": "5.9.3",
    "yaml": "2.8.1"
  }
}'
if [ "$(cat "$CACHE/.installed" 2>/dev/null)" != "$PKG" ] || [ ! -d "$CACHE/node_modules" ]; then
    say "npm install into $CACHE (first run only)"
    printf '%s\n' "$PKG" >"$CACHE/package.json"
    # kubernetes-models declares node >= 22 but runs on the node 20 here.
    (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error --engine-strict=false \
        >"$WORK/npm.log" 2>&1) || {
        cat "$WORK/npm.log"
        exit 1
    }
    printf '%s' "$PKG" >"$CACHE/.installed"
fi

# ---- the validator ------------------------------------------------------------
cat >"$CACHE/validate.mjs" <<'EOF'
// Validates Kubernetes objects from YAML files: kubernetes-models schemas, then
// a TypeScript strict-field check against kubernetes-types. Arguments:
// --top FILE (every document must be a Kubernetes object) or FILE (documents
// without apiVersion/kind are skipped). Prints one line per object.
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { parseAllDocuments } from "yaml";

const [workDir, ...args] = process.argv.slice(2);
const objects = []; // { where, doc }
let failed = 0;
const lines = [];

function fail(where, msg, obj) {
  failed++;
  lines.push(`FAIL ${where}: ${msg}`);
  if (obj) obj.bad = true;
}

for (let i = 0; i < args.length; i++) {
  const top = args[i] === "--top";
  const file = top ? args[++i] : args[i];
  const rel = path.relative(process.cwd(), file);
  const name = rel.startsWith("..") ? path.resolve(file) : rel;
  const docs = parseAllDocuments(fs.readFileSync(file, "utf8"));
  docs.forEach((d, n) => {
    const where = `${name}#${n}`;
    if (d.errors.length) return fail(where, `YAML: ${d.errors[0].message}`);
    const doc = d.toJS();
    if (doc === null || doc === undefined) return; // empty document
    if (typeof doc !== "object" || Array.isArray(doc) || !doc.apiVersion || !doc.kind) {
      if (top) return fail(where, "not a Kubernetes object (apiVersion and kind required)");
      lines.push(`skip ${where}: not a Kubernetes object`);
      return;
    }
    objects.push({ where: `${where} ${doc.kind}/${doc.metadata?.name ?? "?"}`, doc });
  });
}

// Built-in groups: none, or a k8s.io suffix; anything else is a custom resource.
function splitApiVersion(apiVersion) {
  const i = apiVersion.lastIndexOf("/");
  return i < 0 ? ["", apiVersion] : [apiVersion.slice(0, i), apiVersion.slice(i + 1)];
}
const builtin = (group) => group === "" || !group.includes(".") || group.endsWith(".k8s.io");
// Custom resources with published models: the Prometheus Operator's (PodMonitor, ...), checked
// against their CRD schemas and, like the built-in kinds, for unknown fields by TypeScript.
const crdModels = { "monitoring.coreos.com": "@kubernetes-models/prometheus-operator" };

// 1. schemas
const strict = [];
for (const o of objects) {
  const [group, version] = splitApiVersion(String(o.doc.apiVersion));
  const crd = builtin(group) ? undefined : crdModels[group];
  if (!builtin(group) && !crd) {
    lines.push(`skip ${o.where}: custom resource ${o.doc.apiVersion}, no schema`);
    continue;
  }
  const mod = crd
    ? `${crd}/${group}/${version}/${o.doc.kind}`
    : `kubernetes-models/${group || ""}${group ? "/" : ""}${version}/${o.doc.kind}`;
  if (crd) o.types = { mod, name: `I${o.doc.kind}` };
  let Model;
  try {
    Model = (await import(mod))[o.doc.kind];
  } catch {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    fail(o.where, `no Kubernetes schema for ${o.doc.apiVersion} ${o.doc.kind}`, o);
    continue;
  }
  try {
    new Model(o.doc).validate();
  } catch (e) {
    fail(o.where, `schema: ${e.message}`, o);
  }
  // Checked even after a schema error, so one run lists every problem.
  o.group = group;
  o.version = version;
  strict.push(o);
}

// 2. strict fields: one object literal per object, typed by kubernetes-types.
// Under the cache dir so that tsc resolves kubernetes-types from its node_modules.
const here = path.dirname(new URL(import.meta.url).pathname);
const tsDir = fs.mkdtempSync(path.join(here, "run-"));
process.on("exit", () => fs.rmSync(tsDir, { recursive: true, force: true }));
const byFile = new Map();
strict.forEach((o, n) => {
  const file = `obj${n}.ts`;
  const typesGroup = o.group === "" ? "core" : o.group.split(".")[0];
  const types = o.types ?? { mod: `kubernetes-types/${typesGroup}/${o.version}`, name: o.doc.kind };
  fs.writeFileSync(
    path.join(tsDir, file),
    `// ${o.where}\nimport type { ${types.name} as T } from "${types.mod}";\n` +
      `export const obj: T = ${JSON.stringify(o.doc, null, 2)};\n`,
  );
  byFile.set(file, o);
});
if (strict.length) {
  fs.writeFileSync(
    path.join(tsDir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, module: "preserve", moduleResolution: "bundler",
        skipLibCheck: true, types: [],
      },
      include: ["*.ts"],
    }),
  );
  const tsc = path.join(here, "node_modules/.bin/tsc");
  let out = "";
  try {
    execFileSync(tsc, ["-p", tsDir, "--pretty", "false"], { encoding: "utf8", env: { ...process.env, NODE_PATH: "" } });
  } catch (e) {
    out = (e.stdout || "") + (e.stderr || "");
  }
  for (const line of out.split("\n")) {
    const m = line.match(/^(?:.*\/)?(obj\d+\.ts)\((\d+),\d+\): error TS\d+: (.*)$/);
    if (!m) {
      if (line.trim()) fail("typescript", line.trim());
      continue;
    }
    const o = byFile.get(m[1]);
    const src = fs.readFileSync(path.join(tsDir, m[1]), "utf8").split("\n")[Number(m[2]) - 1] ?? "";
    fail(o.where, `strict: ${m[3]} (at: ${src.trim().slice(0, 80)})`, o);
  }
  for (const o of strict) if (!o.bad) lines.push(`ok   ${o.where}`);
}

for (const l of lines) console.log(l);
const passed = strict.filter((o) => !o.bad).length;
console.log(`objects: ${passed} valid, ${failed} problems`);
fs.writeFileSync(path.join(workDir, "counts"), `${passed} ${failed}\n`);
process.exit(failed ? 1 : 0);
EOF

# ---- what to check -------------------------------------------------------------
files=()
while IFS= read -r -d '' f; do
    case "$(basename "$f")" in kustomization.yaml | kustomization.yml | Kustomization) continue ;; esac
    if [ "$(dirname "$f")" = "$DIR" ]; then files+=(--top "$f"); else files+=("$f"); fi
done < <(find "$DIR" -type f \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)

rc=0
say "validating manifests in ${DIR#"$ROOT"/} (kubernetes-models $(
    node -p 'require(process.argv[1]).version' "$CACHE/node_modules/kubernetes-models/package.json"
) schemas, kubernetes-types $(
    node -p 'require(process.argv[1]).version' "$CACHE/node_modules/kubernetes-types/package.json"
) strict fields)"
mkdir -p "$WORK/files"
(cd "$ROOT" && node "$CACHE/validate.mjs" "$WORK/files" "${files[@]}") || rc=1
read -r PASSED FAILED <"$WORK/files/counts" || {
    PASSED=0
    FAILED=1
}

# ---- kustomize render ----------------------------------------------------------
if [ -f "$DIR/kustomization.yaml" ]; then
    command -v kubectl >/dev/null || install_debs kubernetes-client
    say "rendering: kubectl kustomize ${DIR#"$ROOT"/} ($(kubectl version --client 2>/dev/null |
        grep -i kustomize | tr -d '\n'))"
    if kubectl kustomize "$DIR" >"$WORK/rendered.yaml" 2>"$WORK/kustomize.err"; then
        say "rendered $(grep -c '^kind:' "$WORK/rendered.yaml") objects; validating the render"
        mkdir -p "$WORK/render"
        (cd "$WORK" && node "$CACHE/validate.mjs" "$WORK/render" --top rendered.yaml) || rc=1
        read -r p f <"$WORK/render/counts" || {
            p=0
            f=1
        }
        PASSED=$((PASSED + p))
        FAILED=$((FAILED + f))
    else
        echo "FAIL kustomize: $(cat "$WORK/kustomize.err")"
        FAILED=$((FAILED + 1))
        rc=1
    fi
fi

say "done"
echo "$PASSED passed, $FAILED failed"
exit "$rc"
