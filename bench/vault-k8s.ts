// The webhook side by side with hashicorp/vault-k8s's injector (built by scripts/build-peers.sh):
// the same pod (3 containers, 10 secret references: vault's annotations for vault-k8s, ours for
// sm-injector), the same load from this process, each webhook pinned to the same core and this
// process to the other, alternating rounds; throughput (closed loop, 16 connections), p99 at a fixed
// 1,000/s (the polling generator, as the main webhook bench judges its target), CPU per admission
// and RSS after the load, split into anonymous memory (heap, stacks, buffers: the process's own) and
// file-backed pages (the binary's code and data as far as it was read). A third contender is the
// floor: bench/node-floor-webhook.cjs, a bare node:https server with the chart's node flags that
// parses each review and allows it, so that the runtime's share of the ratios is measured too.
//
// vault-k8s insists on an in-cluster Kubernetes client: a throwaway kube-apiserver + etcd (the e2e
// harness) with a static bearer token, and the ServiceAccount files vault-k8s reads from their fixed
// path, put there in a private mount namespace (unshare -m, a tmpfs over /run), so nothing changes
// on this machine. Needs root (unshare) and the e2e binaries (scripts/build-binaries.sh).
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { generateCA, generateCert } from "../test/e2e/harness/certs.ts";
import { type ControlPlane, startControlPlane } from "../test/e2e/harness/controlplane.ts";
import { getFreePort } from "../test/e2e/harness/ports.ts";
import { admissionReview } from "../test/helpers/webhook.ts";
import { openLoop } from "./open-loop.ts";
import { buildPeers } from "./peers.ts";
import {
  type BenchWebhook,
  benchNodeArgs,
  pinning,
  pinSelf,
  processCpuMs,
  readyBenchWebhook,
  realisticPod,
  rssKiB,
  startBenchWebhook,
} from "./webhook.ts";

const TOKEN = "sm-injector-bench-vault-k8s";

/** realisticPod() with vault-k8s's annotations for the same 10 secrets instead of ours. */
export function vaultPod(): object {
  const pod = structuredClone(realisticPod()) as { metadata: { annotations: Record<string, string> } };
  const annotations: Record<string, string> = {
    "vault.hashicorp.com/agent-inject": "true",
    "vault.hashicorp.com/role": "erp-api",
  };
  for (let i = 0; i < 10; i++)
    annotations[`vault.hashicorp.com/agent-inject-secret-SECRET_${i}`] =
      `secret/data/erp/production/service/secret_${i}`;
  pod.metadata.annotations = annotations;
  return pod;
}

async function startVaultK8s(bin: string, cp: ControlPlane, cpu: number): Promise<BenchWebhook> {
  const dir = await mkdtemp(join(tmpdir(), "sm-injector-vault-k8s-"));
  const ca = await generateCA(dir, "vault-k8s-ca");
  const serving = await generateCert(dir, ca, { cn: "vault-agent-injector", sans: ["127.0.0.1"] });
  await writeFile(join(dir, "token"), TOKEN);
  await writeFile(join(dir, "ca.crt"), cp.caCertPem);
  const port = await getFreePort();
  const api = new URL(cp.apiServerUrl);
  const sa = "/run/secrets/kubernetes.io/serviceaccount";
  const script = [
    "set -e",
    "mount -t tmpfs tmpfs /run",
    `mkdir -p ${sa}`,
    `cp "$1/token" "$1/ca.crt" ${sa}/`,
    `printf default > ${sa}/namespace`,
    'shift; exec "$@"',
  ].join("\n");
  const logPath = join(dir, "vault-k8s.log");
  const out = openSync(logPath, "a");
  const child = spawn(
    "unshare",
    [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      script,
      "sh",
      dir,
      "taskset",
      "-c",
      String(cpu),
      join(bin, "vault-k8s"),
      "agent-inject",
      `-listen=127.0.0.1:${port}`,
      `-tls-cert-file=${serving.certPath}`,
      `-tls-key-file=${serving.keyPath}`,
      "-vault-address=https://vault.vault.svc:8200",
      "-log-level=error",
    ],
    {
      stdio: ["ignore", out, out],
      env: {
        PATH: process.env.PATH ?? "",
        KUBERNETES_SERVICE_HOST: api.hostname,
        KUBERNETES_SERVICE_PORT: api.port,
      },
    },
  );
  closeSync(out);
  // The pid of vault-k8s itself: unshare execs sh, which execs taskset, which execs vault-k8s.
  return readyBenchWebhook(child, {
    url: `https://127.0.0.1:${port}`,
    ca: ca.certPem,
    dir,
    readyPath: "/health/ready",
    status: 204,
    timeoutMs: 30_000,
    why: () => `vault-k8s exited before it was ready:\n${readFileSync(logPath, "utf8").slice(-3000)}`,
  });
}

export interface SideBySide {
  name: string;
  requestsPerSecond: number[];
  p99AtFixedRateMs: number[];
  cpuMsPerAdmission: number[];
  rssAfterMiB: number[];
  anonAfterMiB: number[];
  fileAfterMiB: number[];
}

/** RSS split as the kernel counts it (/proc/PID/status): anonymous and file-backed, in MiB. */
function rssSplitMiB(pid: number): { anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN);
  return { anon: Math.round(kib("RssAnon") / 1024), file: Math.round(kib("RssFile") / 1024) };
}

/** bench/node-floor-webhook.cjs on `cpu`, with the chart's node flags. */
async function startFloorWebhook(cpu: number): Promise<BenchWebhook> {
  const dir = await mkdtemp(join(tmpdir(), "sm-injector-floor-"));
  const ca = await generateCA(dir, "floor-ca");
  const serving = await generateCert(dir, ca, { cn: "floor", sans: ["127.0.0.1"] });
  const port = await getFreePort();
  const child = spawn(
    "taskset",
    [
      "-c",
      String(cpu),
      process.execPath,
      // The same node flags as sm-injector's webhook in this run.
      ...benchNodeArgs(),
      join(import.meta.dirname, "node-floor-webhook.cjs"),
      String(port),
      serving.certPath,
      serving.keyPath,
    ],
    { stdio: "ignore", env: { PATH: process.env.PATH ?? "" } },
  );
  return readyBenchWebhook(child, {
    url: `https://127.0.0.1:${port}`,
    ca: ca.certPem,
    dir,
    readyPath: "/",
    timeoutMs: 20_000,
    why: () => "bench/node-floor-webhook.cjs exited before it was ready",
  });
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function oneRound(wh: BenchWebhook, body: string, seconds: number, expect: string, poll: boolean) {
  const cpu0 = processCpuMs(wh.pid);
  const closed = await autocannon({
    url: `${wh.url}/mutate`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    connections: 16,
    duration: seconds,
    tlsOptions: { ca: wh.ca },
  } as autocannon.Options);
  const cpuMs = processCpuMs(wh.pid) - cpu0;
  const fixed = await openLoop({
    url: `${wh.url}/mutate`,
    ca: wh.ca,
    body,
    rate: 1000,
    seconds,
    warmupSeconds: 1,
    maxConnections: 64,
    expect,
    poll,
  });
  if (closed.non2xx + closed.errors > 0 || fixed.errors + fixed.non2xx > 0)
    throw new Error(
      `errors under load: ${closed.non2xx + closed.errors} closed loop, ${fixed.errors + fixed.non2xx} fixed rate`,
    );
  return {
    rps: Math.round(closed.requests.average),
    p99: fixed.p99Ms,
    cpuPerAdmission: Math.round((cpuMs / Math.max(1, closed.requests.total)) * 1000) / 1000,
    rssMiB: Math.round(rssKiB(wh.pid) / 1024),
    ...rssSplitMiB(wh.pid),
  };
}

export async function benchWebhookPeers(opts: {
  log: (s: string) => void;
  rounds?: number;
  seconds?: number;
}): Promise<SideBySide[]> {
  const bin = buildPeers(opts.log);
  const rounds = opts.rounds ?? 5;
  const seconds = opts.seconds ?? 5;
  const tokens = await mkdtemp(join(tmpdir(), "sm-injector-bench-tokens-"));
  await writeFile(join(tokens, "tokens.csv"), `${TOKEN},vault-k8s,vault-k8s,system:masters\n`);
  opts.log("webhook side by side: starting kube-apiserver + etcd for vault-k8s's in-cluster client");
  const cp = await startControlPlane({
    extraApiServerArgs: [`--token-auth-file=${join(tokens, "tokens.csv")}`],
  });
  // Each webhook on the last core, this process (the load generator) on the first, as in the main
  // webhook bench; with a core to itself the generator polls (an exact instrument, see openLoop).
  const pin = pinning();
  const cpu = pin?.webhookCpu ?? 1;
  const contenders = [
    {
      name: "sm-injector",
      start: () => startBenchWebhook(cpu),
      body: JSON.stringify(admissionReview(realisticPod())),
    },
    {
      name: "vault-k8s",
      start: () => startVaultK8s(bin, cp, cpu),
      body: JSON.stringify(admissionReview(vaultPod())),
    },
    {
      name: "floor: bare node:https server",
      start: () => startFloorWebhook(cpu),
      body: JSON.stringify(admissionReview(realisticPod())),
    },
  ];
  const results: SideBySide[] = contenders.map((c) => ({
    name: c.name,
    requestsPerSecond: [],
    p99AtFixedRateMs: [],
    cpuMsPerAdmission: [],
    rssAfterMiB: [],
    anonAfterMiB: [],
    fileAfterMiB: [],
  }));
  if (pin) pinSelf(String(pin.generatorCpu));
  try {
    for (let round = 1; round <= rounds; round++)
      for (const [i, c] of contenders.entries()) {
        opts.log(`webhook side by side: ${c.name}, round ${round}/${rounds}`);
        const wh = await c.start();
        try {
          // Warm-up (JIT, connection pools), not measured.
          await autocannon({
            url: `${wh.url}/mutate`,
            method: "POST",
            headers: { "content-type": "application/json" },
            body: c.body,
            connections: 8,
            duration: 1,
            tlsOptions: { ca: wh.ca },
          } as autocannon.Options);
          const r = await oneRound(wh, c.body, seconds, '"allowed":true', pin !== undefined);
          const into = results[i] as SideBySide;
          into.requestsPerSecond.push(r.rps);
          into.p99AtFixedRateMs.push(r.p99);
          into.cpuMsPerAdmission.push(r.cpuPerAdmission);
          into.rssAfterMiB.push(r.rssMiB);
          into.anonAfterMiB.push(r.anon);
          into.fileAfterMiB.push(r.file);
        } finally {
          await wh.stop();
        }
      }
  } finally {
    if (pin) pinSelf(pin.allCpus);
    await cp.stop();
    await rm(tokens, { recursive: true, force: true });
  }
  return results;
}

export function webhookPeersTable(results: SideBySide[]): string {
  const [ours, vault, floor] = results as [SideBySide, SideBySide, SideBySide];
  type Metric = keyof Omit<SideBySide, "name">;
  const m = (r: SideBySide, k: Metric) => median(r[k] as number[]);
  const ratio = (a: SideBySide, k: Metric) => Math.round((m(a, k) / m(vault, k)) * 100) / 100;
  const row = (label: string, k: Metric, times = "") =>
    `| ${label} | ${m(ours, k)} | ${m(vault, k)} | ${ratio(ours, k)}${times} | ${m(floor, k)} (${ratio(floor, k)}${times}) |`;
  return [
    `**Webhook, side by side with vault-k8s** (the same pod of 3 containers and 10 secret references, each webhook pinned to the same core, ${ours.requestsPerSecond.length} alternating rounds, medians; \`npm run bench -- --peers\`; the floor is a bare node:https server that parses each review and allows it, bench/node-floor-webhook.cjs):`,
    "",
    "| | sm-injector | vault-k8s | sm-injector ÷ vault-k8s | floor: bare Node.js server (÷ vault-k8s) |",
    "|---|---|---|---|---|",
    row("closed loop, 16 connections, admissions/s", "requestsPerSecond", "×"),
    row("p99 at a fixed 1,000/s, ms", "p99AtFixedRateMs"),
    row("CPU per admission (closed loop), ms", "cpuMsPerAdmission"),
    row("RSS after the load, MiB", "rssAfterMiB", "×"),
    row("of which anonymous (heap, stacks, buffers), MiB", "anonAfterMiB", "×"),
    row("of which file-backed (pages of the binary read), MiB", "fileAfterMiB", "×"),
  ].join("\n");
}
