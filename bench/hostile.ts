// The webhook against hostile pods (issue 11): each of the worst inputs a tenant can send, one at a
// time, to the real bundled server over TLS, with a normal opted-in pod sent right behind it. Per
// case: the webhook's CPU time for the pair, its peak RSS above the level before the case (the
// kernel's high-water mark, reset before each case through /proc/PID/clear_refs), how long the normal
// pod waited, and the size of the answer. Target: < 100 ms of CPU and < 32 MiB of extra RSS for any
// AdmissionReview up to the body limit.
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { fileURLToPath } from "node:url";
import { forgedFetchSpec } from "../test/helpers/forged.ts";
import { admissionReview } from "../test/helpers/webhook.ts";
import { type BenchWebhook, processCpuMs, realisticPod, rssKiB, startBenchWebhook } from "./webhook.ts";

export const TARGET_CPU_MS = 100;
export const TARGET_EXTRA_RSS_MIB = 32;

export interface HostileResult {
  scenario: string;
  bodyBytes: number;
  /** HTTP status and, for an AdmissionReview answer, allowed or denied. */
  answer: string;
  answerBytes: number;
  ms: number;
  webhookCpuMs: number;
  extraPeakRssMiB: number;
  /** How long a normal pod sent 5 ms after the hostile one waited for its answer. */
  normalPodMs: number;
  normalPodAnswer: string;
  met: boolean;
}

type Pod = Record<string, unknown>;

/** IRSA as EKS's webhook sets it: no ServiceAccount look-up (the bench has no API server). */
const IDENTITY = [
  { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/tenant" },
  { name: "AWS_WEB_IDENTITY_TOKEN_FILE", value: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token" },
  { name: "AWS_REGION", value: "eu-west-1" },
];

function opted(annotations: Record<string, string>, spec?: Pod): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      generateName: "hostile-",
      namespace: "tenant",
      labels: { "sm-injector.io/inject": "true" },
      annotations,
    },
    spec: spec ?? {
      containers: [
        {
          name: "app",
          image: "registry.example.com/app:1",
          env: IDENTITY,
        },
      ],
    },
  };
}

const body = (pod: Pod) => JSON.stringify(admissionReview(pod));

/** The cases of issue 11, each as the request body a tenant's pod becomes. */
export function hostileBodies(): Array<{ scenario: string; body: string }> {
  const cases: Array<{ scenario: string; body: string }> = [];
  cases.push({
    scenario: "secrets annotation of 700k keys (1.4 MB)",
    body: body(
      opted({ "sm-injector.io/secrets": `- secret: a\n  keys: [${Array(700_000).fill("x").join(",")}]` }),
    ),
  });
  const six: Record<string, string> = { "sm-injector.io/env.A": "erp/a" };
  for (let i = 0; i < 6; i++) six[`sm-injector.io/${String.fromCharCode(97 + i).repeat(200_000)}`] = "x";
  cases.push({ scenario: "6 unknown annotation keys of 200 KB", body: body(opted(six)) });
  const many: Record<string, string> = {};
  for (let i = 0; i < 40_000; i++) many[`sm-injector.io/env.V${i}`] = "not a secret!";
  cases.push({ scenario: "40,000 invalid annotations", body: body(opted(many)) });
  const badList = JSON.stringify(Array.from({ length: 13_000 }, (_, i) => ({ secret: `bad name ${i}` })));
  cases.push({
    scenario: `structured list of 13,000 invalid entries (${Math.round(badList.length / 1024)} KB)`,
    body: body(opted({ "sm-injector.io/secrets": badList })),
  });
  // The YAML parser's worst case within its limit (the structured form not in the plain form).
  const flow: string[] = [];
  for (let i = 0; `[${[...flow, "x".repeat(200)].join(", ")}]`.length < 8 * 1024; i++)
    flow.push(`{secret: "erp/x${i}", keys: [${Array(30).fill("'k'").join(", ")}]}`);
  const yamlDoc = `[${flow.join(", ")}]`;
  cases.push({
    scenario: "8 KiB structured annotation in YAML flow style (first use of the YAML parser)",
    body: body(opted({ "sm-injector.io/secrets": yamlDoc })),
  });
  cases.push({
    scenario: "200 KB JSON key (#key)",
    body: body(opted({ "sm-injector.io/env.A": `erp/production/db#${"k".repeat(200_000)}` })),
  });
  const forgedSpec = forgedFetchSpec(
    Array.from({ length: 500 }, (_, i) => `other-team/secret-${i}`),
    "eu-west-1",
  );
  cases.push({
    scenario: "forged 'already injected' pod, 500-entry spec",
    body: body(
      opted(
        { "sm-injector.io/env.A": "erp/a", "sm-injector.io/status": "injected" },
        {
          initContainers: [
            {
              name: "sm-injector-fetch",
              image: "registry.example.com/sm-injector:bench",
              args: ["fetch"],
              env: [{ name: "SM_INJECTOR_SPEC", value: forgedSpec }],
              volumeMounts: [{ name: "sm-injector-secrets", mountPath: "/run/sm-injector" }],
            },
          ],
          containers: [{ name: "app", image: "registry.example.com/app:1", env: IDENTITY }],
          volumes: [{ name: "sm-injector-secrets", emptyDir: { medium: "Memory" } }],
        },
      ),
    ),
  });
  const bigEnv = Array.from({ length: 28 }, (_, i) => ({ name: `BLOB_${i}`, value: "v".repeat(100_000) }));
  cases.push({
    scenario: "2.8 MB pod (large env values), opted in",
    body: body(
      opted(
        { "sm-injector.io/env.A": "erp/a" },
        {
          containers: [
            {
              name: "app",
              image: "registry.example.com/app:1",
              env: [...IDENTITY, ...bigEnv],
            },
          ],
        },
      ),
    ),
  });
  cases.push({
    scenario: "3,000 containers, all targeted",
    body: body(
      opted(
        { "sm-injector.io/env.A": "erp/a", "sm-injector.io/region": "eu-west-1" },
        {
          containers: Array.from({ length: 3000 }, (_, i) => ({
            name: `c${i}`,
            image: "registry.example.com/app:1",
            env: [...IDENTITY, ...Array.from({ length: 7 }, (_, j) => ({ name: `E${j}`, value: "x" }))],
          })),
        },
      ),
    ),
  });
  const depth = 400_000;
  const nested = `${"[".repeat(depth)}${"]".repeat(depth)}`;
  const shallow = body(opted({ "sm-injector.io/env.A": "erp/a" }));
  cases.push({
    scenario: `JSON nested ${depth.toLocaleString("en")} deep`,
    body: shallow.replace(
      '"image":"registry.example.com/app:1"',
      `"image":"registry.example.com/app:1","x":${nested}`,
    ),
  });
  return cases;
}

function resetPeak(pid: number): void {
  // "5" resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0).
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

function peakKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

function post(wh: BenchWebhook, payload: string): Promise<{ ms: number; answer: string; bytes: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const done = (answer: string, bytes: number) =>
      resolve({ ms: Math.round((performance.now() - t0) * 10) / 10, answer, bytes });
    const req = https.request(
      `${wh.url}/mutate`,
      { method: "POST", ca: wh.ca, headers: { "content-type": "application/json" }, timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const allowed = /"allowed":(true|false)/.exec(text)?.[1];
          done(
            `${res.statusCode}${allowed === undefined ? "" : allowed === "true" ? " allowed" : " denied"}`,
            text.length,
          );
        });
        res.on("error", (e) => done(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`, 0));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => done(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`, 0));
    req.end(payload);
  });
}

export async function benchHostile(opts: { log: (s: string) => void }): Promise<HostileResult[]> {
  const wh = await startBenchWebhook(undefined);
  try {
    const normal = JSON.stringify(admissionReview(realisticPod()));
    for (let i = 0; i < 200; i++) await post(wh, normal); // warm up the JIT
    const results: HostileResult[] = [];
    for (const c of hostileBodies()) {
      opts.log(`hostile: ${c.scenario}`);
      await new Promise((r) => setTimeout(r, 200));
      const before = rssKiB(wh.pid);
      resetPeak(wh.pid);
      const cpu0 = processCpuMs(wh.pid);
      const hostile = post(wh, c.body);
      await new Promise((r) => setTimeout(r, 5));
      const ok = await post(wh, normal);
      const h = await hostile;
      const cpu = processCpuMs(wh.pid) - cpu0;
      const extra = Math.max(0, peakKiB(wh.pid) - before) / 1024;
      results.push({
        scenario: c.scenario,
        bodyBytes: Buffer.byteLength(c.body),
        answer: h.answer,
        answerBytes: h.bytes,
        ms: h.ms,
        webhookCpuMs: Math.round(cpu),
        extraPeakRssMiB: Math.round(extra * 10) / 10,
        normalPodMs: ok.ms,
        normalPodAnswer: ok.answer,
        met: cpu < TARGET_CPU_MS && extra < TARGET_EXTRA_RSS_MIB && ok.answer === "200 allowed",
      });
    }
    return results;
  } finally {
    await wh.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results = await benchHostile({ log: (s) => process.stderr.write(`[bench] ${s}\n`) });
  for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
}
