// `sm-injector webhook`: the wiring. Builds the dependencies (logger, TLS files, metrics, cached
// Kubernetes look-ups), hands them to buildServer(), warms the decision up, listens, reloads TLS on a
// timer and SIGHUP, drains on SIGTERM. Configuration errors exit 2 with the list of problems.
import type { Server as HttpsServer } from "node:https";
import { type Logger, pino } from "pino";
import type { ReviewDeps } from "../admission/review.ts";
import { warmUpDecision } from "../admission/warm-up.ts";
import { ConfigError, loadWebhookConfig, WEBHOOK_FLAGS, type WebhookConfig } from "../webhook/config.ts";
import { createMetrics, type WebhookMetrics } from "../webhook/metrics.ts";
import { buildServer, type Webhook } from "../webhook/server.ts";
import { loadTls, type TlsPaths, tlsReloader } from "../webhook/tls.ts";
import { flagHelp } from "./flags.ts";

export function webhookHelp(): string {
  return `sm-injector webhook [flags]

Runs the mutating admission webhook over HTTPS: POST /mutate, GET /healthz, /readyz, /metrics.
Every flag can also be given as an environment variable; flags win.

${flagHelp(WEBHOOK_FLAGS)}
`;
}

export async function runWebhookCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(webhookHelp());
    return 0;
  }
  let config: WebhookConfig;
  try {
    config = loadWebhookConfig(argv, process.env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`sm-injector webhook: ${e.message}\n`);
    return 2;
  }
  const running = await startWebhook(config);
  await untilStopped(running, config.shutdownDelaySeconds);
  return 0;
}

/** Resolves once SIGTERM or SIGINT has been handled: unready, the delay served, then closed. */
function untilStopped(running: RunningWebhook, delaySeconds: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      running.webhook.setReady(false);
      running.webhook.app.log.info({ signal, delaySeconds }, "shutting down: draining in-flight admissions");
      setTimeout(() => void running.close().then(resolve), delaySeconds * 1000);
    };
    const onTerm = () => stop("SIGTERM");
    const onInt = () => stop("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    process.on("SIGHUP", () => void running.reloadTls());
  });
}

export interface RunningWebhook {
  webhook: Webhook;
  url: string;
  reloadTls(): Promise<boolean>;
  close(): Promise<void>;
}

/** The certificate files as the flags named them (messages say which flag to fix). */
function tlsPaths(config: WebhookConfig): TlsPaths {
  return {
    cert: { flag: "--tls-cert-file", path: config.tlsCertFile },
    key: { flag: "--tls-key-file", path: config.tlsKeyFile },
    ca: config.clientCaFile ? { flag: "--client-ca-file", path: config.clientCaFile } : undefined,
  };
}

/**
 * Synchronous writes to stdout: every admission writes an audit line, and pino's default
 * asynchronous destination hands each one to a libuv worker thread whose completion then wakes the
 * event loop again — two thread switches per admission, which on a busy node showed up as latency.
 * A synchronous write is one system call, and no audit line is lost if the process dies.
 */
function webhookLogger(config: WebhookConfig): Logger {
  return pino(
    { level: config.logLevel, base: { component: "webhook" } },
    pino.destination({ dest: 1, sync: true }),
  );
}

/** Starts the HTTPS server with the real look-ups; resolves once it listens, warmed up and ready. */
export async function startWebhook(config: WebhookConfig): Promise<RunningWebhook> {
  const logger = webhookLogger(config);
  const paths = tlsPaths(config);
  const files = await loadTls(paths);
  const metrics = createMetrics();
  const kube = await kubernetesDeps(config, metrics, logger);
  const webhook = buildServer({
    deps: kube.deps,
    logger,
    metrics,
    bodyLimitBytes: config.bodyLimitBytes,
    https: files,
    limits: {
      requestTimeoutMs: config.requestTimeoutSeconds * 1000,
      maxConnections: config.maxConnections,
      inFlightBodyBytes: config.maxInFlightBodyBytes,
    },
    ...(config.clientCaFile && { clientAuth: { allowedNames: config.clientAllowedNames ?? [] } }),
    namespaceExists: kube.namespaceExists,
    ready: false,
  });
  const reloadTls = tlsReloader(webhook.app.server as HttpsServer, paths, files, logger, metrics);
  const timer = setInterval(() => void reloadTls(), config.tlsReloadIntervalSeconds * 1000);
  timer.unref();
  const warmUpMs = warmUpDecision(config.injector);
  webhook.setReady(true);
  const address = await webhook.app.listen({ port: config.port, host: config.host });
  logger.info(
    {
      address,
      image: config.injector.image,
      defaultRegion: config.injector.defaultRegion,
      clientCertificates: config.clientCaFile ? "required on /mutate" : "not required",
      warmUpMs: Math.round(warmUpMs),
    },
    "sm-injector webhook listening",
  );
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearInterval(timer);
      webhook.setReady(false);
      await webhook.app.close();
    })();
    return closing;
  };
  return { webhook, url: address, reloadTls, close };
}

/** The real look-ups through the Kubernetes API, cached (see lookups.ts). */
async function kubernetesDeps(
  config: WebhookConfig,
  metrics: WebhookMetrics,
  logger: Logger,
): Promise<{ deps: ReviewDeps; namespaceExists: (ns: string) => Promise<boolean> }> {
  const { cachedLookup, InvalidNameError, kubernetesReaders } = await import("../kube/lookups.ts");
  const { serviceAccountIdentity } = await import("../mutate/identity.ts");
  const { namespacePolicy } = await import("../contract/policy.ts");
  const readers = await kubernetesReaders(config.kubeconfig);
  const ttlMs = config.serviceaccountCacheSeconds * 1000;
  const serviceAccounts = cachedLookup(
    (key) => {
      const [ns, name] = key.split("/") as [string, string];
      return readers.serviceAccountAnnotations(ns, name).then(serviceAccountIdentity);
    },
    { ttlMs, onResult: (r) => metrics.serviceAccountLookups.inc({ result: r }) },
  );
  // One read per namespace serves both the policy and the metric label's existence check.
  const namespaces = cachedLookup(
    (ns) =>
      readers.namespaceAnnotations(ns).then((a) => {
        const policy = namespacePolicy(a);
        // The platform team's to fix: an invalid policy refuses every reference (fail closed), and
        // the denials do not say why (they never show a namespace's policy to the pod's author).
        if (policy?.problems?.length)
          logger.warn({ namespace: ns, problems: policy.problems }, "invalid namespace secret policy");
        return { exists: a !== undefined, policy };
      }),
    { ttlMs, onResult: (r) => metrics.namespaceLookups.inc({ result: r }) },
  );
  const deps: ReviewDeps = {
    config: config.injector,
    lookupServiceAccount: (ns, name) => serviceAccounts.lookup(`${ns}/${name}`),
    ...(config.namespacePolicy && {
      lookupNamespacePolicy: (ns: string) => namespaces.lookup(ns).then((n) => n.policy),
    }),
  };
  // An invalid name cannot exist (the reader refuses it without an API call); other errors mean "unknown".
  const namespaceExists = (ns: string) =>
    namespaces.lookup(ns).then(
      (n) => n.exists,
      (e: unknown) => (e instanceof InvalidNameError ? false : Promise.reject(e)),
    );
  return { deps, namespaceExists };
}
