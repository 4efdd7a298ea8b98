// Webhook under load: the real bundled server over TLS on loopback, a realistic AdmissionReview
// (a Deployment's pod with 3 containers and 10 secret references), autocannon as the load.
import { readFileSync } from "node:fs";
import autocannon from "autocannon";
import { admissionReview, startWebhookProcess } from "../test/helpers/webhook.ts";

export interface LoadResult {
  scenario: string;
  connections: number;
  targetRate?: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  non2xx: number;
  requests: number;
}

export function realisticPod(): object {
  const annotations: Record<string, string> = {
    "sm-injector.io/region": "eu-west-1",
    "sm-injector.io/env-from": "erp/production/database",
  };
  for (let i = 0; i < 8; i++)
    annotations[`sm-injector.io/env.SECRET_${i}`] = `erp/production/service/secret_${i}#value`;
  annotations["sm-injector.io/secrets"] =
    "- secret: erp/production/aws/s3_app_user_credentials\n  prefix: S3_\n";
  const identityEnv = [
    { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/erp-api" },
    { name: "AWS_WEB_IDENTITY_TOKEN_FILE", value: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token" },
    { name: "AWS_REGION", value: "eu-west-1" },
  ];
  const container = (name: string) => ({
    name,
    image: `registry.example.com/erp/${name}:1.4.2`,
    command: ["uvicorn", "app.main:app"],
    env: [...identityEnv, { name: "LOG_LEVEL", value: "info" }],
    resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
    volumeMounts: [
      {
        name: "aws-iam-token",
        mountPath: "/var/run/secrets/eks.amazonaws.com/serviceaccount",
        readOnly: true,
      },
    ],
  });
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      generateName: "erp-api-7d9f8c-",
      namespace: "erp",
      labels: { app: "erp-api", "pod-template-hash": "7d9f8c", "sm-injector.io/inject": "true" },
      annotations,
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "ReplicaSet", name: "erp-api-7d9f8c", uid: "0b5f", controller: true },
      ],
    },
    spec: {
      serviceAccountName: "erp-api",
      securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001 },
      containers: [container("api"), container("worker"), container("metrics")],
      volumes: [
        {
          name: "aws-iam-token",
          projected: {
            sources: [
              {
                serviceAccountToken: {
                  audience: "sts.amazonaws.com",
                  expirationSeconds: 86400,
                  path: "token",
                },
              },
            ],
          },
        },
      ],
    },
  };
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

async function load(opts: {
  url: string;
  ca: string;
  body: string;
  connections: number;
  seconds: number;
  overallRate?: number;
}) {
  return autocannon({
    url: `${opts.url}/mutate`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: opts.body,
    connections: opts.connections,
    duration: opts.seconds,
    ...(opts.overallRate && { overallRate: opts.overallRate }),
    tlsOptions: { ca: opts.ca },
  } as autocannon.Options);
}

export async function benchWebhook(opts: {
  seconds: number;
  log: (s: string) => void;
}): Promise<{ results: LoadResult[]; rssBeforeKiB: number; rssAfterKiB: number }> {
  const wh = await startWebhookProcess({ args: ["--log-level", "warn", "--namespace-policy", "false"] });
  try {
    const body = JSON.stringify(admissionReview(realisticPod()));
    const check = JSON.parse((await wh.post("/mutate", body)).body);
    if (!check.response?.patch)
      throw new Error(`the benchmark pod was not injected: ${JSON.stringify(check)}`);
    // Warm up the JIT before measuring.
    await load({ url: wh.url, ca: wh.ca.certPem, body, connections: 8, seconds: 2 });
    const rssBeforeKiB = rssKiB(wh.process.pid);
    const results: LoadResult[] = [];
    const scenarios: { name: string; connections: number; overallRate?: number }[] = [
      { name: "closed loop", connections: 1 },
      { name: "closed loop", connections: 16 },
      { name: "closed loop", connections: 64 },
      { name: "fixed rate 1000/s", connections: 16, overallRate: 1000 },
    ];
    for (const s of scenarios) {
      opts.log(`webhook: ${s.name}, ${s.connections} connections, ${opts.seconds} s`);
      const r = await load({
        url: wh.url,
        ca: wh.ca.certPem,
        body,
        connections: s.connections,
        seconds: opts.seconds,
        ...(s.overallRate && { overallRate: s.overallRate }),
      });
      results.push({
        scenario: s.name,
        connections: s.connections,
        ...(s.overallRate && { targetRate: s.overallRate }),
        requestsPerSecond: Math.round(r.requests.average),
        p50Ms: r.latency.p50,
        p99Ms: r.latency.p99,
        p999Ms: (r.latency as unknown as Record<string, number>).p99_9 ?? Number.NaN,
        errors: r.errors + r.timeouts,
        non2xx: r.non2xx,
        requests: r.requests.total,
      });
    }
    return { results, rssBeforeKiB, rssAfterKiB: rssKiB(wh.process.pid) };
  } finally {
    await wh.stop();
  }
}
