// Golden files for the whole admission decision: test/golden/<case>.in.yaml holds a Pod, optionally a
// ServiceAccount and a Namespace (as the API server would return them) and a `kind: TestConfig` document with
// webhook configuration overrides; <case>.out.yaml holds the decision, the warnings and the pod
// after applying the returned JSON patch. Regenerate with UPDATE_GOLDEN=1 and review the diff.
//
// Every case runs through both entry points, the webhook (reviewPod) and `sm-injector inject`
// (injectManifests over the same documents), against the same expected output: the one decision.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parseAllDocuments, stringify } from "yaml";
import { reviewPod } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { namespacePolicy } from "../../src/contract/policy.ts";
import { injectManifests } from "../../src/inject/manifests.ts";
import { serviceAccountIdentity } from "../../src/mutate/identity.ts";
import { applyPatch } from "../helpers/json-patch.ts";

const dir = join(import.meta.dirname, "..", "golden");
const update = process.env.UPDATE_GOLDEN === "1";

function readCase(inText: string) {
  const docs = parseAllDocuments(inText).map((d) => d.toJS());
  const pod = docs.find((d) => d?.kind === "Pod");
  assert.ok(pod, "a golden input needs a Pod document");
  const sa = docs.find((d) => d?.kind === "ServiceAccount");
  const ns = docs.find((d) => d?.kind === "Namespace");
  const overrides = { ...(docs.find((d) => d?.kind === "TestConfig") ?? {}) };
  delete overrides.kind;
  // A null override unsets a default (e.g. `defaultRegion: null`).
  const merged = { image: "registry.example.com/sm-injector:test", defaultRegion: "eu-west-1", ...overrides };
  const config = InjectorConfigSchema.parse(
    Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== null)),
  );
  return { pod, sa, ns, config };
}

/** The case through the webhook's entry point: an AdmissionRequest, look-ups answered from the case's documents. */
export async function runGoldenCase(inText: string) {
  const { pod, sa, ns, config } = readCase(inText);
  const lookups: string[] = [];
  const outcome = await reviewPod(
    {
      uid: "golden",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: pod.metadata?.namespace ?? "default",
      object: pod,
    },
    {
      config,
      async lookupServiceAccount(namespace, name) {
        lookups.push(`${namespace}/${name}`);
        if (sa?.metadata?.name === name) return serviceAccountIdentity(sa.metadata?.annotations);
        return {};
      },
      async lookupNamespacePolicy() {
        return namespacePolicy(ns?.metadata?.annotations);
      },
    },
  );
  const r = outcome.response;
  const result: Record<string, unknown> = { allowed: r.allowed, result: outcome.result };
  if (outcome.denial) result.denial = outcome.denial;
  if (r.warnings?.length) result.warnings = r.warnings;
  if (!r.allowed) result.message = r.status?.message;
  if (lookups.length) result.serviceAccountLookups = lookups;
  if (r.patch) {
    const patch = JSON.parse(Buffer.from(r.patch, "base64").toString("utf8"));
    result.pod = applyPatch(pod, patch);
  }
  return result;
}

/**
 * The case through `sm-injector inject`: the whole input file (its TestConfig document is not a
 * workload and passes through), in the same shape as runGoldenCase's result minus the look-up log.
 */
async function runGoldenCaseThroughInject(inText: string) {
  const { config } = readCase(inText);
  const r = await injectManifests(inText, config);
  const outcome = r.pods[0];
  const result: Record<string, unknown> = { allowed: r.ok, result: outcome?.result ?? "skipped" };
  if (outcome?.denial) result.denial = outcome.denial;
  const prefix = outcome ? `${outcome.where}: ` : "";
  const unprefixed = (s: string) => {
    assert.ok(s.startsWith(prefix), `"${s}" names its document`);
    return s.slice(prefix.length);
  };
  if (r.warnings.length) result.warnings = r.warnings.map(unprefixed);
  if (!r.ok) {
    assert.equal(r.errors.length, 1, "one refusal, for the one pod");
    result.message = unprefixed(r.errors[0] as string);
  }
  if (r.ok && outcome?.result === "injected")
    result.pod = parseAllDocuments(r.output)
      .map((d) => d.toJS())
      .find((d) => d?.kind === "Pod");
  return result;
}

const cases = readdirSync(dir)
  .filter((f) => f.endsWith(".in.yaml"))
  .map((f) => f.slice(0, -".in.yaml".length));

test("there are golden cases", () => assert.ok(cases.length >= 10, `only ${cases.length} golden cases`));

for (const name of cases) {
  test(`golden: ${name}`, async () => {
    const result = await runGoldenCase(readFileSync(join(dir, `${name}.in.yaml`), "utf8"));
    const text = stringify(result, { lineWidth: 0 });
    const outFile = join(dir, `${name}.out.yaml`);
    if (update || !existsSync(outFile)) {
      writeFileSync(outFile, text);
      if (!update) assert.fail(`${outFile} did not exist; written — review it and run again`);
    }
    assert.equal(
      text,
      readFileSync(outFile, "utf8"),
      `${name}: output differs (UPDATE_GOLDEN=1 to regenerate, then review the diff)`,
    );
  });
  test(`golden through inject: ${name}`, async () => {
    const expected = parseAllDocuments(readFileSync(join(dir, `${name}.out.yaml`), "utf8"))[0]?.toJS();
    delete expected.serviceAccountLookups;
    const result = await runGoldenCaseThroughInject(readFileSync(join(dir, `${name}.in.yaml`), "utf8"));
    assert.deepStrictEqual(result, expected, `${name}: inject disagrees with the webhook`);
  });
}
