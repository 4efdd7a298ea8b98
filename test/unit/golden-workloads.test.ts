// The golden corpus (test/golden/<case>.in.yaml → .out.yaml) again, with each case's Pod put into
// the pod template of a Deployment, a StatefulSet and a CronJob and sent through `sm-injector
// inject`: the template must come out as the webhook's pod (the one decision, whatever wraps the
// pod), with the same refusal, code and warnings. And the opt-in is the label's value "true" only.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments, stringify } from "yaml";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { injectManifests } from "../../src/inject/manifests.ts";

const dir = join(import.meta.dirname, "..", "golden");
type Obj = Record<string, unknown> & { metadata?: Record<string, unknown>; spec?: Record<string, unknown> };

const WRAPPERS: Record<string, (template: Obj, meta: Record<string, unknown>) => Obj> = {
  Deployment: (template, meta) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta,
    spec: { selector: { matchLabels: { app: "x" } }, template },
  }),
  StatefulSet: (template, meta) => ({
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: meta,
    spec: { serviceName: "x", selector: { matchLabels: { app: "x" } }, template },
  }),
  CronJob: (template, meta) => ({
    apiVersion: "batch/v1",
    kind: "CronJob",
    metadata: meta,
    spec: { schedule: "0 * * * *", jobTemplate: { spec: { template } } },
  }),
};

function templateOf(doc: Obj): Obj {
  const spec = doc.spec as Obj;
  return (doc.kind === "CronJob" ? ((spec.jobTemplate as Obj).spec as Obj).template : spec.template) as Obj;
}

/** The case's input with its Pod wrapped; the pod's name and namespace move to the workload. */
function wrapCase(
  inText: string,
  kind: string,
): { text: string; config: ReturnType<typeof InjectorConfigSchema.parse> } {
  const docs = parseAllDocuments(inText).map((d) => d.toJS() as Obj);
  const overrides = { ...(docs.find((d) => d?.kind === "TestConfig") ?? {}) };
  delete overrides.kind;
  const merged = { image: "registry.example.com/sm-injector:test", defaultRegion: "eu-west-1", ...overrides };
  const config = InjectorConfigSchema.parse(
    Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== null)),
  );
  const out = docs
    .filter((d) => d && d.kind !== "TestConfig")
    .map((d) => {
      if (d.kind !== "Pod") return d;
      const { name, generateName, namespace, ...rest } = d.metadata ?? {};
      const template: Obj = { metadata: rest, spec: d.spec ?? {} };
      const wrapper = WRAPPERS[kind] as (t: Obj, m: Record<string, unknown>) => Obj;
      return wrapper(template, {
        name: name ?? generateName ?? "w",
        ...(namespace !== undefined && { namespace }),
      });
    });
  return { text: out.map((d) => stringify(d)).join("---\n"), config };
}

/** The webhook's pod from a golden output, as a template: without the pod's own name and namespace. */
function asTemplate(pod: Obj): Obj {
  const { name: _n, generateName: _g, namespace: _ns, ...metadata } = pod.metadata ?? {};
  return { metadata, spec: pod.spec ?? {} };
}

const cases = readdirSync(dir)
  .filter((f) => f.endsWith(".in.yaml"))
  .map((f) => f.slice(0, -".in.yaml".length));

describe("golden cases through inject, inside workloads", () => {
  for (const name of cases) {
    for (const kind of Object.keys(WRAPPERS)) {
      test(`${name} as a ${kind}`, async () => {
        const expected = parseAllDocuments(
          readFileSync(join(dir, `${name}.out.yaml`), "utf8"),
        )[0]?.toJS() as Obj;
        const { text, config } = wrapCase(readFileSync(join(dir, `${name}.in.yaml`), "utf8"), kind);
        const r = await injectManifests(text, config);
        const outcome = r.pods[0];
        assert.equal(outcome?.result ?? "skipped", expected.result);
        assert.equal(outcome?.denial, expected.denial);
        const strip = (s: string) => s.slice(s.indexOf(": ") + 2);
        assert.deepEqual(r.warnings.map(strip), (expected.warnings as string[] | undefined) ?? []);
        if (!expected.allowed) {
          assert.deepEqual(r.errors.map(strip), [expected.message]);
          return;
        }
        assert.ok(r.ok, r.errors.join("\n"));
        if (expected.result !== "injected") return;
        const workload = parseAllDocuments(r.output)
          .map((d) => d.toJS() as Obj)
          .find((d) => d?.kind === kind) as Obj;
        assert.deepStrictEqual(templateOf(workload), asTemplate(expected.pod as Obj));
      });
    }
  }
});

describe('only the label value "true" opts a pod template in', () => {
  const deployment = (labels: Record<string, string>) =>
    stringify(
      WRAPPERS.Deployment?.(
        {
          metadata: { labels: { app: "x", ...labels }, annotations: { "sm-injector.io/env.A": "erp/a/b" } },
          spec: { containers: [{ name: "app", image: "app:1", command: ["/app"] }] },
        },
        { name: "api", namespace: "erp" },
      ),
    );
  const config = InjectorConfigSchema.parse({
    image: "registry.example.com/sm-injector:test",
    defaultRegion: "eu-west-1",
  });

  for (const value of ["false", "True", "TRUE", "yes", "1", "", " true"]) {
    test(`sm-injector.io/inject: ${JSON.stringify(value)} leaves the manifest as it is`, async () => {
      const input = deployment({ "sm-injector.io/inject": value });
      const r = await injectManifests(input, config);
      assert.ok(r.ok);
      assert.equal(r.injected, 0);
      assert.equal(r.output, input);
    });
  }

  test('no label: unchanged; "true": injected', async () => {
    assert.equal((await injectManifests(deployment({}), config)).injected, 0);
    assert.equal(
      (await injectManifests(deployment({ "sm-injector.io/inject": "true" }), config)).injected,
      1,
    );
  });
});
