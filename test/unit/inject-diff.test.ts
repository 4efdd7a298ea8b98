// `inject --diff` shows what injection changes and nothing else: a manifest written with flow-style
// maps, comments and quoting keeps them in the diff (it compares the document with itself edited,
// src/inject/yaml-edit.ts), and the edit always reaches exactly the injected value.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { parseDocument, stringify } from "yaml";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { injectManifests } from "../../src/inject/manifests.ts";
import { editDocument } from "../../src/inject/yaml-edit.ts";

const config = InjectorConfigSchema.parse({ image: "ghcr.io/sm-injector/sm-injector:test" });

const FLOW = `# The API, with flow-style maps as some people write them.
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: erp, labels: {app: api}}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api, sm-injector.io/inject: "true"}
      annotations: {sm-injector.io/env.DB_PASSWORD: "erp/production/rds#password", sm-injector.io/region: eu-west-1}
    spec:
      serviceAccountName: api
      securityContext: {runAsUser: 1000, runAsGroup: 1000}
      containers:
        - {name: api, image: "api:1", command: [uvicorn, app:app], ports: [{containerPort: 8080}]}  # the app
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: erp}
spec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}
`;

describe("inject --diff", () => {
  test("a flow-style manifest: only the lines injection changes are removed, comments and flow maps stay", async () => {
    const r = await injectManifests(FLOW, config, { diff: true, fileName: "api.yaml" });
    assert.ok(r.ok, r.errors.join("\n"));
    const lines = r.output.split("\n");
    const removed = lines.filter((l) => l.startsWith("-") && !l.startsWith("---"));
    // The pod template's annotations gain the status, the container gains its mount and variable.
    assert.equal(removed.length, 2, removed.join("\n"));
    assert.match(removed[0] ?? "", /^- +annotations: \{/);
    assert.match(removed[1] ?? "", /^- +- \{ name: api,/);
    const added = lines.filter((l) => l.startsWith("+") && !l.startsWith("+++"));
    assert.ok(added.some((l) => l.includes("sm-injector-fetch")));
    assert.ok(
      !r.output.includes("matchLabels:\n"),
      "the flow-style selector is not re-rendered in block style",
    );
    assert.ok(!lines.some((l) => /^[-+].*kind: Service/.test(l)), "the Service is untouched");
  });

  test("a manifest already in block style: the diff adds lines, removes only what changes", async () => {
    const block = stringify(parseDocument(FLOW).toJS(), { lineWidth: 0 });
    const r = await injectManifests(block, config, { diff: true });
    const removed = r.output.split("\n").filter((l) => l.startsWith("-") && !l.startsWith("---"));
    assert.deepEqual(removed, [], "nothing of a block-style manifest is removed by injection");
  });
});

describe("editDocument", () => {
  const json = fc.jsonValue({ maxDepth: 4 });
  test("the edited document's value is exactly the target, whatever the two values", () => {
    fc.assert(
      fc.property(json, json, (before, after) => {
        const doc = parseDocument(stringify(before, { lineWidth: 0 }));
        editDocument(doc, after);
        const json = (v: unknown) => JSON.parse(JSON.stringify(v)); // -0 is 0 in JSON
        assert.deepStrictEqual(json(parseDocument(doc.toString({ lineWidth: 0 })).toJS()), json(after));
      }),
      { numRuns: 500 },
    );
  });

  test("unchanged parts keep their text", () => {
    const doc = parseDocument("a: {x: 1, y: [1, 2]}  # keep\nb: 'quoted'\nc: [1, 2, 3]\n");
    editDocument(doc, { a: { x: 1, y: [1, 2] }, b: "quoted", c: [1, 2, 3, 4], d: true });
    assert.equal(
      doc.toString(),
      "a: { x: 1, y: [ 1, 2 ] } # keep\nb: 'quoted'\nc: [ 1, 2, 3, 4 ]\nd: true\n",
    );
  });
});
