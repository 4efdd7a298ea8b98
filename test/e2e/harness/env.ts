/**
 * One e2e environment per test file: the control plane (kube-apiserver + etcd), optionally moto's
 * server, the real `sm-injector webhook` bundle over TLS (reading ServiceAccounts and Namespaces from
 * the test API server), and the MutatingWebhookConfiguration registered with a loopback `url` +
 * `caBundle`. `useE2E()` brings it up in `before` and tears everything down in `after`, also when a
 * test (or the start-up itself) fails.
 *
 * The webhook configuration is the chart's, rendered by helm (test/e2e/webhook-config.ts) when that
 * module exists, else (or with SM_INJECTOR_E2E_WEBHOOK_CONFIG=fixture) the minimal stand-in
 * test/e2e/fixtures/mutatingwebhook.yaml.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from "@kubernetes/client-node";
import { parse } from "yaml";
import { type Moto, startMoto } from "../../helpers/moto.ts";
import { startWebhookProcess, type WebhookProcess } from "../../helpers/webhook.ts";
import { type CertAuthority, generateCA, generateCert, type IssuedCert } from "./certs.ts";
import { type ControlPlane, startControlPlane } from "./controlplane.ts";
import { getFreePort } from "./ports.ts";

export const INJECT_LABEL = "sm-injector.io/inject";
export const WEBHOOK_NAME = "inject.sm-injector.io";
export const INIT_CONTAINER = "sm-injector-fetch";
export const INIT_IMAGE = "registry.example.com/sm-injector:test";
export const DEFAULT_REGION = "us-east-1";

const WEBHOOK_CONFIG_MODULE = fileURLToPath(new URL("../webhook-config.ts", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../fixtures/mutatingwebhook.yaml", import.meta.url));

export interface E2EOptions {
  /** Start moto's server too (Secrets Manager + STS). */
  moto?: boolean;
  /** More flags for `sm-injector webhook`. */
  webhookArgs?: string[];
  /**
   * Client-certificate authentication: kube-apiserver presents a client certificate to the webhook
   * (AdmissionConfiguration kubeconfig, user named after the webhook's host:port) and the webhook
   * runs with --client-ca-file. The CA and the certificate are in `E2E.clientAuth`.
   */
  webhookClientAuth?: boolean;
}

export interface ClientAuthMaterial {
  ca: CertAuthority;
  /** The certificate kube-apiserver presents (CN kube-apiserver-webhook-client). */
  apiServerCert: IssuedCert;
}

/** The client CA, kube-apiserver's certificate, and the kubeconfig it uses for the webhook at `host`. */
async function clientAuthMaterial(
  dir: string,
  host: string,
): Promise<ClientAuthMaterial & { kubeconfigYaml: string }> {
  const ca = await generateCA(dir, "webhook-client-ca");
  const apiServerCert = await generateCert(dir, ca, { cn: "kube-apiserver-webhook-client", client: true });
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  // For a webhook called by URL, the user's name is the URL's host:port (see the README).
  const kubeconfigYaml = [
    "apiVersion: v1",
    "kind: Config",
    "users:",
    `  - name: ${JSON.stringify(host)}`,
    "    user:",
    `      client-certificate-data: ${b64(apiServerCert.certPem)}`,
    `      client-key-data: ${b64(apiServerCert.keyPem)}`,
    "",
  ].join("\n");
  return { ca, apiServerCert, kubeconfigYaml };
}

export interface E2E {
  cp: ControlPlane;
  core: CoreV1Api;
  apps: AppsV1Api;
  admission: AdmissionregistrationV1Api;
  webhook: WebhookProcess;
  /** Only with `{ moto: true }`. */
  moto: Moto | undefined;
  /** Only with `{ webhookClientAuth: true }`. */
  clientAuth: ClientAuthMaterial | undefined;
  /** Where the registered MutatingWebhookConfiguration came from, and its name. */
  webhookConfiguration: { source: "chart" | "fixture"; name: string };
  /** Every output line of the webhook so far (kept after it stopped). */
  webhookLog(): string;
  /** The webhook's JSON log lines so far, parsed (e.g. its audit lines, msg "admission"). */
  webhookLogEntries(): Array<Record<string, unknown>>;
  /** Sum of sm_injector_admission_requests_total over all results. */
  admissionRequests(): Promise<number>;
  /** Stops the webhook process (its configuration stays registered). Idempotent. */
  stopWebhook(): Promise<void>;
  /**
   * Creates a namespace as a real cluster has it: with the `default` ServiceAccount and the
   * `kube-root-ca.crt` ConfigMap (both made by the controller-manager, which is not running here),
   * plus the given ServiceAccounts (name → annotations).
   */
  createNamespace(
    name: string,
    opts?: {
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
      serviceAccounts?: Record<string, Record<string, string>>;
    },
  ): Promise<void>;
  stop(): Promise<void>;
}

/** `{ code, message }` of a @kubernetes/client-node ApiException (message from the Status body). */
export function apiError(e: unknown): { code: number | undefined; message: string } {
  const err = e as { code?: unknown; body?: unknown; message?: string };
  let message = err.message ?? String(e);
  try {
    const status = typeof err.body === "string" ? JSON.parse(err.body) : err.body;
    if (status && typeof status === "object" && "message" in status) message = String(status.message);
  } catch {
    // not JSON: keep the exception's message
  }
  return { code: typeof err.code === "number" ? err.code : undefined, message };
}

interface WebhookConfigModule {
  renderWebhookConfiguration(opts: { url: string; caBundlePem: string }): Promise<object>;
}

/** The chart's configuration when test/e2e/webhook-config.ts exists, else the fixture. */
async function webhookConfiguration(
  url: string,
  caBundlePem: string,
): Promise<{ source: "chart" | "fixture"; body: V1MutatingWebhookConfiguration }> {
  if (existsSync(WEBHOOK_CONFIG_MODULE) && process.env.SM_INJECTOR_E2E_WEBHOOK_CONFIG !== "fixture") {
    const mod = (await import(pathToFileURL(WEBHOOK_CONFIG_MODULE).href)) as WebhookConfigModule;
    const body = (await mod.renderWebhookConfiguration({
      url,
      caBundlePem,
    })) as V1MutatingWebhookConfiguration;
    return { source: "chart", body };
  }
  const body = parse(readFileSync(FIXTURE, "utf8")) as V1MutatingWebhookConfiguration;
  for (const w of body.webhooks ?? []) {
    w.clientConfig = { url, caBundle: Buffer.from(caBundlePem).toString("base64") };
  }
  return { source: "fixture", body };
}

/**
 * The API server picks up a new webhook configuration asynchronously (an informer). Polls with a
 * dry-run create of an opted-in pod until the webhook's mutation shows (nothing is stored).
 */
async function waitUntilRegistered(core: CoreV1Api, namespace: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
    try {
      const pod: V1Pod = await core.createNamespacedPod({
        namespace,
        dryRun: "All",
        body: {
          metadata: {
            generateName: "probe-",
            labels: { [INJECT_LABEL]: "true" },
            annotations: { "sm-injector.io/env.PROBE": "erp/e2e/probe" },
          },
          spec: { containers: [{ name: "main", image: "busybox", command: ["true"] }] },
        },
      });
      if (pod.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER)) return;
      last = "the pod came back without the init container";
    } catch (e) {
      last = apiError(e).message;
    }
    if (Date.now() > deadline)
      throw new Error(`the webhook was not called by the API server in time: ${last}`);
    await new Promise((r) => setTimeout(r, wait));
  }
}

export async function startE2E(opts: E2EOptions = {}): Promise<E2E> {
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    const errors: unknown[] = [];
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, "e2e teardown failed");
  };
  try {
    const webhookPort = opts.webhookClientAuth ? await getFreePort() : undefined;
    let clientAuth: (ClientAuthMaterial & { kubeconfigYaml: string }) | undefined;
    if (webhookPort !== undefined) {
      const dir = await mkdtemp(path.join(tmpdir(), "sm-injector-client-auth-"));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      clientAuth = await clientAuthMaterial(dir, `127.0.0.1:${webhookPort}`);
    }
    const [cp, moto] = await Promise.all([
      startControlPlane(clientAuth ? { webhookKubeconfigYaml: clientAuth.kubeconfigYaml } : {}).then((c) => {
        cleanups.push(() => c.stop());
        return c;
      }),
      opts.moto
        ? startMoto().then((m) => {
            cleanups.push(() => m.stop());
            return m;
          })
        : Promise.resolve(undefined),
    ]);
    const lines: string[] = [];
    const webhook = await startWebhookProcess({
      args: [
        "--kubeconfig",
        cp.kubeconfigPath,
        "--default-region",
        DEFAULT_REGION,
        ...(clientAuth ? ["--client-ca-file", clientAuth.ca.certPath] : []),
        ...(opts.webhookArgs ?? []),
      ],
      log: (l) => lines.push(l),
      ...(webhookPort !== undefined && { port: webhookPort }),
    });
    let webhookStopped: Promise<void> | undefined;
    const stopWebhook = () => {
      webhookStopped ??= webhook.stop();
      return webhookStopped;
    };
    // Before the control plane (cleanups run in reverse).
    cleanups.push(stopWebhook);

    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    const apps = cp.kubeConfig.makeApiClient(AppsV1Api);
    const admission = cp.kubeConfig.makeApiClient(AdmissionregistrationV1Api);

    const createNamespace: E2E["createNamespace"] = async (name, o = {}) => {
      await core.createNamespace({
        body: {
          metadata: {
            name,
            ...(o.labels && { labels: o.labels }),
            ...(o.annotations && { annotations: o.annotations }),
          },
        },
      });
      await core.createNamespacedConfigMap({
        namespace: name,
        body: { metadata: { name: "kube-root-ca.crt" }, data: { "ca.crt": cp.caCertPem } },
      });
      const accounts = { default: {}, ...o.serviceAccounts };
      for (const [sa, annotations] of Object.entries(accounts)) {
        await core.createNamespacedServiceAccount({
          namespace: name,
          body: { metadata: { name: sa, annotations } },
        });
      }
    };

    const config = await webhookConfiguration(`${webhook.url}/mutate`, webhook.ca.certPem);
    await admission.createMutatingWebhookConfiguration({ body: config.body });
    await createNamespace("e2e-probe");
    await waitUntilRegistered(core, "e2e-probe");

    return {
      cp,
      core,
      apps,
      admission,
      webhook,
      moto,
      clientAuth: clientAuth && { ca: clientAuth.ca, apiServerCert: clientAuth.apiServerCert },
      webhookConfiguration: { source: config.source, name: config.body.metadata?.name ?? "" },
      webhookLog: () => lines.join("\n"),
      webhookLogEntries: () =>
        lines.flatMap((l) => {
          const json = l.slice(l.indexOf("{"));
          try {
            return json.startsWith("{") ? [JSON.parse(json) as Record<string, unknown>] : [];
          } catch {
            return [];
          }
        }),
      admissionRequests: () => webhook.metric("sm_injector_admission_requests_total"),
      stopWebhook,
      createNamespace,
      stop: stopAll,
    };
  } catch (e) {
    await stopAll().catch(() => {});
    throw e;
  }
}

/**
 * Registers `before`/`after` hooks (of the enclosing node:test suite or file) that start and stop one
 * environment, then run `setup` (in the same hook: top-level hooks are not ordered among themselves);
 * returns its accessor.
 */
export function useE2E(
  hooks: { before: (fn: () => Promise<void>) => void; after: (fn: () => Promise<void>) => void },
  opts: E2EOptions & { setup?: (env: E2E) => Promise<void> } = {},
): () => E2E {
  let env: E2E | undefined;
  let starting: Promise<E2E> | undefined;
  hooks.before(async () => {
    const t0 = performance.now();
    starting = startE2E(opts);
    env = await starting;
    await opts.setup?.(env);
    process.stderr.write(`e2e environment ready in ${Math.round(performance.now() - t0)} ms\n`);
  });
  hooks.after(async () => {
    await starting?.catch(() => {});
    await env?.stop();
  });
  return () => {
    if (!env) throw new Error("the e2e environment did not start (see the before hook's error)");
    return env;
  };
}
