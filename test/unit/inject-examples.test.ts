// `sm-injector inject` over every file in examples/: the whole printed output is a golden file
// (test/golden/examples/<name>.injected.yaml; UPDATE_GOLDEN=1 regenerates), and the documents that
// do not opt in come out byte for byte as they went in.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { injectManifests } from "../../src/inject/manifests.ts";

const root = join(import.meta.dirname, "..", "..");
const examples = join(root, "examples");
const goldenDir = join(root, "test", "golden", "examples");
const config = InjectorConfigSchema.parse({ image: "ghcr.io/sm-injector/sm-injector:test" });
const update = process.env.UPDATE_GOLDEN === "1";

describe("inject over examples/", () => {
  const files = readdirSync(examples).filter((f) => f.endsWith(".yaml"));
  test("there are examples", () => assert.ok(files.length >= 4));
  for (const file of files) {
    test(file, async () => {
      const input = readFileSync(join(examples, file), "utf8");
      const r = await injectManifests(input, config);
      assert.ok(r.ok, r.errors.join("\n"));
      assert.ok(r.injected >= 1, "every example opts in at least one pod template");
      const out = join(goldenDir, file.replace(/\.yaml$/, ".injected.yaml"));
      if (update || !existsSync(out)) {
        writeFileSync(out, r.output);
        if (!update) assert.fail(`${out} was missing; written — review it and run again`);
      }
      assert.equal(r.output, readFileSync(out, "utf8"));
      // Documents that do not opt in pass through untouched, in order.
      const before = parseAllDocuments(input).map((d) => d.toJS());
      const after = parseAllDocuments(r.output).map((d) => d.toJS());
      assert.equal(after.length, before.length);
      before.forEach((doc, i) => {
        assert.equal(after[i].kind, doc.kind);
        if (!JSON.stringify(doc).includes('"sm-injector.io/inject":"true"')) assert.deepEqual(after[i], doc);
      });
    });
  }
});

describe("inject refusals and diff", () => {
  test("invalid annotations fail with the document named and the webhook's message", async () => {
    const r = await injectManifests(
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {sm-injector.io/inject: 'true'}\n  annotations: {sm-injector.io/env.A: 'bad name'}\nspec:\n  containers: [{name: c, image: i}]\n",
      config,
    );
    assert.equal(r.ok, false);
    assert.match(
      r.errors[0] ?? "",
      /^document 1 \(Pod p\): sm-injector: 1 problem with this pod's annotations:\n {2}- sm-injector.io\/env.A: "bad name" contains " "/,
    );
  });
  test("a Namespace in the input applies its allowed-secrets to the workloads in it, as the webhook would", async () => {
    const manifest = `apiVersion: v1
kind: Namespace
metadata:
  name: erp-prod
  annotations: {sm-injector.io/allowed-secrets: "erp/production/*"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: erp-prod}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api, sm-injector.io/inject: "true"}
      annotations: {sm-injector.io/env.JWT: erp/staging/jwt/secret_key, sm-injector.io/region: eu-west-1}
    spec:
      containers: [{name: api, image: api:1}]
`;
    const r = await injectManifests(manifest, config);
    assert.equal(r.ok, false);
    assert.equal(r.errors.length, 1);
    assert.match(
      r.errors[0] ?? "",
      /^document 2 \(Deployment api\): sm-injector: namespace policy refused this pod:\n {2}- secret "erp\/staging\/jwt\/secret_key" is not allowed in namespace erp-prod/,
    );
    const allowed = await injectManifests(manifest.replace("erp/staging/jwt", "erp/production/jwt"), config);
    assert.ok(allowed.ok, allowed.errors.join("\n"));
    assert.equal(allowed.injected, 1);
  });

  test("--diff shows only the added lines", async () => {
    const r = await injectManifests(readFileSync(join(examples, "command-wrap.yaml"), "utf8"), config, {
      diff: true,
      fileName: "command-wrap.yaml",
    });
    assert.ok(r.ok);
    assert.match(r.output, /^\+\s+- name: sm-injector-fetch$/m);
    assert.match(r.output, /^--- command-wrap.yaml/m);
    assert.doesNotMatch(r.output, /^\+.*kind: Service$/m);
  });
  test("invalid YAML is reported, not thrown", async () => {
    const r = await injectManifests("a: [1\n", config);
    assert.equal(r.ok, false);
    assert.match(r.errors[0] ?? "", /document 1: invalid YAML/);
  });
});
