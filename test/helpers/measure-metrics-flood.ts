// Measures /metrics after N admissions naming random namespaces (what anyone who reaches /mutate
// can send), through buildServer().inject():
//   node --import tsx test/helpers/measure-metrics-flood.ts [N]
import { pino } from "pino";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { buildServer } from "../../src/webhook/server.ts";
import { admissionReview } from "./webhook.ts";

const n = Number(process.argv[2] ?? 200_000);
const config = InjectorConfigSchema.parse({ image: "registry.example.com/sm-injector:test" });
const { app, metrics } = buildServer({
  deps: { config, lookupServiceAccount: async () => ({}) as never },
  logger: pino({ level: "silent" }),
});
const pod = (ns: string) => ({
  metadata: {
    name: "p",
    namespace: ns,
    labels: { "sm-injector.io/inject": "true" },
    annotations: { "sm-injector.io/env.A": "erp/a/b" },
  },
  spec: {
    securityContext: { runAsUser: 1000 },
    containers: [
      {
        name: "c",
        image: "i",
        env: [
          { name: "AWS_REGION", value: "eu-west-1" },
          { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/r" },
          { name: "AWS_WEB_IDENTITY_TOKEN_FILE", value: "/t" },
        ],
      },
    ],
  },
});
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  const ns = `ns-${i.toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  await app.inject({ method: "POST", url: "/mutate", payload: admissionReview(pod(ns)) });
}
await new Promise((r) => setImmediate(r));
const text = await metrics.registry.metrics();
const series = (await metrics.injections.get()).values.length;
console.log(
  `${n} admissions in ${Math.round(performance.now() - t0)} ms: sm_injector_injections_total has ${series} series; /metrics is ${text.length} bytes; RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`,
);
await app.close();
