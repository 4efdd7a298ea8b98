// Runs the real bundled CLI (`dist/sm-injector.mjs webhook`) over TLS on a free loopback port, with
// its own generated CA, and talks to it the way the API server does.
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CertAuthority, generateCA, generateCert, type IssuedCert } from "../e2e/harness/certs.ts";
import { getFreePort } from "../e2e/harness/ports.ts";
import { type ManagedProcess, spawnManaged, waitForHttp } from "../e2e/harness/process.ts";

export const REPO_ROOT = join(import.meta.dirname, "..", "..");
export const CLI = join(REPO_ROOT, "dist", "sm-injector.mjs");

export function requireBundle(): string {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing; run \`npm run build\` first (npm test does)`);
  return CLI;
}

export interface WebhookProcess {
  url: string;
  port: number;
  ca: CertAuthority;
  serving: IssuedCert;
  dir: string;
  process: ManagedProcess;
  post(
    path: string,
    body: string | object,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: string }>;
  get(path: string): Promise<{ status: number; body: string }>;
  /** Value of a counter or gauge line from /metrics (sum over matching label sets). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

export async function startWebhookProcess(
  opts: { args?: string[]; env?: Record<string, string>; log?: (l: string) => void; port?: number } = {},
): Promise<WebhookProcess> {
  const cli = requireBundle();
  const dir = await mkdtemp(join(tmpdir(), "sm-injector-webhook-"));
  const ca = await generateCA(dir, "webhook-ca");
  const serving = await generateCert(dir, ca, {
    cn: "sm-injector.sm-injector.svc",
    sans: ["127.0.0.1", "localhost"],
  });
  const port = opts.port ?? (await getFreePort());
  const proc = spawnManaged(
    "webhook",
    process.execPath,
    [
      cli,
      "webhook",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--tls-cert-file",
      serving.certPath,
      "--tls-key-file",
      serving.keyPath,
      "--image",
      "registry.example.com/sm-injector:test",
      ...(opts.args ?? []),
    ],
    {
      logPath: join(dir, "webhook.log"),
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...opts.env },
      ...(opts.log && { log: opts.log }),
    },
  );
  const url = `https://127.0.0.1:${port}`;
  await waitForHttp(`${url}/readyz`, { ca: ca.certPem, process: proc, timeoutMs: 20_000 });

  const request = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        `${url}${path}`,
        {
          method,
          ca: ca.certPem,
          headers: body !== undefined ? { "content-type": "application/json", ...headers } : headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
          );
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  const self: WebhookProcess = {
    url,
    port,
    ca,
    serving,
    dir,
    process: proc,
    post: (path, body, headers) =>
      request("POST", path, typeof body === "string" ? body : JSON.stringify(body), headers),
    get: (path) => request("GET", path),
    async metric(name, labels = {}) {
      const text = (await request("GET", "/metrics")).body;
      let sum = 0;
      for (const line of text.split("\n")) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const set = m[2] ?? "";
        if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) sum += Number(m[3]);
      }
      return sum;
    },
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}

/** An AdmissionReview v1 for creating `pod`, as the API server sends it. */
export function admissionReview(pod: object, extra: Record<string, unknown> = {}): object {
  const meta = (pod as { metadata?: { namespace?: string; name?: string } }).metadata ?? {};
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: `uid-${Math.random().toString(16).slice(2)}`,
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      requestKind: { group: "", version: "v1", kind: "Pod" },
      namespace: meta.namespace ?? "default",
      ...(meta.name && { name: meta.name }),
      operation: "CREATE",
      userInfo: { username: "kubernetes-admin", groups: ["system:masters"] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: "meta.k8s.io/v1", kind: "CreateOptions" },
      ...extra,
    },
  };
}
