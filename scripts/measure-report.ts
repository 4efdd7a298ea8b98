// How long `sm-injector report` (the bundle) takes, and its peak RSS, on a control plane with many
// injected workloads: N Deployments, each with one injected pod (created through the webhook, its
// status written as the kubelet would after the init container recorded its versions), each
// reading 3 of S secrets in moto. Also counts the API calls the review makes.
//
//   node --import tsx scripts/measure-report.ts [deployments=200] [secrets=50] [runs=3]
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { encodeVersions } from "../src/contract/fetched-versions.ts";
import { createDeploymentPod } from "../test/e2e/harness/controllers.ts";
import { INIT_CONTAINER, INJECT_LABEL, startE2E } from "../test/e2e/harness/env.ts";
import { completedInitStatus } from "../test/helpers/forged.ts";
import { CLI } from "../test/helpers/webhook.ts";

const run = promisify(execFile);
const [deployments = 200, secrets = 50, runs = 3] = process.argv.slice(2).map(Number);
const NS = "erp-scale";

const e = await startE2E({ moto: true });
try {
  await e.createNamespace(NS, {
    serviceAccounts: { app: { "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/app" } },
  });
  const versions: string[] = [];
  for (let i = 0; i < secrets; i++)
    versions.push((await e.moto?.createSecret(`erp/scale/s${i}`, `value-${i}`))?.versionId ?? "");
  for (let d = 0; d < deployments; d++) {
    const refs = [d % secrets, (d * 7 + 1) % secrets, (d * 13 + 2) % secrets];
    const deployment = await e.apps.createNamespacedDeployment({
      namespace: NS,
      body: {
        metadata: { name: `app-${d}` },
        spec: {
          selector: { matchLabels: { app: `app-${d}` } },
          template: {
            metadata: {
              labels: { app: `app-${d}`, [INJECT_LABEL]: "true" },
              annotations: Object.fromEntries(
                refs.map((s, i) => [`sm-injector.io/env.V${i}`, `erp/scale/s${s}`]),
              ),
            },
            spec: {
              serviceAccountName: "app",
              containers: [
                { name: "app", image: "app:1", env: [{ name: "AWS_REGION", value: "us-east-1" }] },
              ],
            },
          },
        },
      },
    });
    const { pod } = await createDeploymentPod(e.apps, e.core, deployment, `h${d}`);
    const records = [...new Set(refs)].map((s) => ({
      secretId: `erp/scale/s${s}`,
      region: "us-east-1",
      stage: "AWSCURRENT",
      versionId: versions[s] as string,
    }));
    await e.core.replaceNamespacedPodStatus({
      namespace: NS,
      name: pod.metadata?.name as string,
      body: {
        ...pod,
        status: {
          phase: "Running",
          initContainerStatuses: [completedInitStatus(INIT_CONTAINER, encodeVersions(records))],
        },
      },
    });
  }
  const env = {
    PATH: process.env.PATH ?? "",
    AWS_ENDPOINT_URL: e.moto?.endpoint,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_REGION: "us-east-1",
  };
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const { stdout, stderr } = await run(
      "/usr/bin/time",
      ["-f", "%M", process.execPath, CLI, "report", "--output", "json", "--kubeconfig", e.cp.kubeconfigPath],
      { env, maxBuffer: 256 * 1024 * 1024 },
    );
    const ms = performance.now() - t0;
    const review = JSON.parse(stdout) as { workloads: Array<{ pods: number }>; secrets: unknown[] };
    const pods = review.workloads.reduce((n, w) => n + w.pods, 0);
    const rssKiB = Number(stderr.trim().split("\n").at(-1));
    process.stdout.write(
      `run ${i + 1}: ${review.workloads.length} workloads, ${pods} verified pods, ${review.secrets.length} secrets: ${Math.round(ms)} ms, peak RSS ${Math.round(rssKiB / 1024)} MiB\n`,
    );
  }
} finally {
  await e.stop();
}
