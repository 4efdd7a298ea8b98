// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// What templates cost the webhook: the whole admission decision (reviewPod, in-process) for pods
// with templates, next to the same secrets as plain entries, and for hostile pods at and over the
// limits. Median of timed batches, µs per admission.
//   node --import tsx test/helpers/measure-template-admission.ts
import type { V1Pod } from "@kubernetes/client-node";
import { reviewPod } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const RDS = "erp/production/rds";

function pod(annotations: Record<string, string>): V1Pod {
  return {
    metadata: { name: "p", namespace: "erp", labels: { "sm-injector.io/inject": "true" }, annotations },
    spec: { securityContext: { runAsUser: 1000 }, containers: [{ name: "api", image: "api:1" }] },
  };
}

const CASES: Record<string, V1Pod> = {
  "RDS URL as one template (5 placeholders)": pod({
    "sm-injector.io/template.DATABASE_URL": `postgresql://\${${RDS}#username|urlencode}:\${${RDS}#password|urlencode}@\${${RDS}#host}:\${${RDS}#port}/\${${RDS}#dbname|urlencode}`,
  }),
  "the same 5 keys as env.<VAR> entries": pod(
    Object.fromEntries(
      ["username", "password", "host", "port", "dbname"].map((k) => [
        `sm-injector.io/env.DB_${k.toUpperCase()}`,
        `${RDS}#${k}`,
      ]),
    ),
  ),
  "15 templates x 32 placeholders (480 references, within limits)": pod(
    Object.fromEntries(
      Array.from({ length: 15 }, (_, i) => [
        `sm-injector.io/template.T${i}`,
        Array.from({ length: 32 }, (_, j) => `\${erp/production/s${j}#key${j}|urlencode}`).join("/"),
      ]),
    ),
  ),
  "500 templates x 32 placeholders (16,000: refused on the count, unparsed)": pod(
    Object.fromEntries(
      Array.from({ length: 500 }, (_, i) => [`sm-injector.io/template.T${i}`, "${a}".repeat(32)]),
    ),
  ),
  "20 templates of 4 KiB of $$ and one placeholder": pod(
    Object.fromEntries(
      Array.from({ length: 20 }, (_, i) => [`sm-injector.io/template.T${i}`, `\${a}${"$$".repeat(2046)}`]),
    ),
  ),
};

async function admit(p: V1Pod) {
  return reviewPod(
    {
      uid: "m",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "erp",
      object: p as unknown as Record<string, unknown>,
    },
    { config, lookupServiceAccount: async () => ({}), lookupNamespacePolicy: async () => undefined },
  );
}

for (const [name, p] of Object.entries(CASES)) {
  const first = await admit(p);
  const n = 200;
  const batches: number[] = [];
  for (let b = 0; b < 7; b++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await admit(p);
    batches.push(((performance.now() - t0) * 1000) / n);
  }
  batches.sort((a, b) => a - b);
  const verdict = first.response.allowed ? "allowed" : `denied (${first.denial})`;
  console.log(
    `${name}: ${verdict}, ${(batches[3] as number).toFixed(0)} µs per admission (median of 7 × ${n})`,
  );
}
