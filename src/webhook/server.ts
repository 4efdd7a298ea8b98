// The admission server: fastify routes around the pure reviewPod(). buildServer() is what tests
// drive with inject(); startWebhook() adds TLS (reloaded when the files change), look-ups of
// ServiceAccounts and graceful shutdown.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Server as HttpsServer } from "node:https";
import { createSecureContext } from "node:tls";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import { type Logger, pino } from "pino";
import { parseAdmissionReview, type ReviewDeps, reviewPod, reviewResponse } from "../admission/review.ts";
import type { WebhookConfig } from "./config.ts";
import { createMetrics, type WebhookMetrics } from "./metrics.ts";

export interface ServerOptions {
  deps: ReviewDeps;
  logger: Logger;
  metrics?: WebhookMetrics;
  bodyLimitBytes?: number;
  https?: { cert: Buffer; key: Buffer };
}

export interface Webhook {
  app: FastifyInstance;
  metrics: WebhookMetrics;
  setReady(ready: boolean): void;
}

const admissionResponseSchema = {
  type: "object",
  properties: {
    apiVersion: { type: "string" },
    kind: { type: "string" },
    response: {
      type: "object",
      properties: {
        uid: { type: "string" },
        allowed: { type: "boolean" },
        status: {
          type: "object",
          properties: { code: { type: "integer" }, message: { type: "string" }, reason: { type: "string" } },
        },
        patchType: { type: "string" },
        // Base64 has nothing to escape: copied as is instead of scanned (5+ KB per admission).
        patch: { type: "string", format: "unsafe" },
        warnings: { type: "array", items: { type: "string" } },
      },
      required: ["uid", "allowed"],
    },
  },
  required: ["apiVersion", "kind", "response"],
} as const;

const errorSchema = { type: "object", properties: { error: { type: "string" } } } as const;

export function buildServer(opts: ServerOptions): Webhook {
  const metrics = opts.metrics ?? createMetrics();
  let ready = true;
  const fastifyOpts: FastifyServerOptions & { https?: Record<string, unknown> } = {
    loggerInstance: opts.logger,
    disableRequestLogging: true,
    bodyLimit: opts.bodyLimitBytes ?? 3 * 1024 * 1024,
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    return503OnClosing: true,
    ...(opts.https && { https: { ...opts.https, minVersion: "TLSv1.2" as const } }),
  };
  const app = Fastify(fastifyOpts) as unknown as FastifyInstance;

  // AdmissionReviews are JSON; anything else is refused with 415 rather than parsed as text.
  app.removeContentTypeParser("text/plain");
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) opts.logger.error({ err: { message: err.message } }, "request failed");
    metrics.admissions.inc({ result: "error" });
    void reply.code(status).send({ error: `sm-injector: ${err.message}` });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: `sm-injector: no route ${req.method} ${req.url}; the webhook path is POST /mutate` });
  });

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    if (!ready) return reply.code(503).send({ status: "shutting down" });
    return { status: "ok" };
  });
  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.post(
    "/mutate",
    { schema: { response: { 200: admissionResponseSchema, 400: errorSchema } } },
    async (req, reply) => {
      const started = process.hrtime.bigint();
      const parsed = parseAdmissionReview(req.body);
      if (!parsed.success) {
        metrics.admissions.inc({ result: "error" });
        const issue = parsed.error.issues[0];
        const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
        return reply
          .code(400)
          .send({ error: `sm-injector: not an AdmissionReview v1: ${where}${issue?.message ?? "invalid"}` });
      }
      const outcome = await reviewPod(parsed.data.request, opts.deps);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.admissions.inc({ result: outcome.result });
      metrics.admissionDuration.observe({ result: outcome.result }, seconds);
      if (outcome.result === "injected" && outcome.reason === "injected" && !outcome.dryRun)
        metrics.injections.inc({ namespace: outcome.namespace });
      if (outcome.result !== "skipped") {
        // The audit line: who asked for which secrets. Never a value: the webhook never sees one.
        opts.logger.info(
          {
            uid: parsed.data.request.uid,
            namespace: outcome.namespace,
            pod: outcome.pod,
            serviceAccount: outcome.serviceAccount,
            secretIds: outcome.secretIds,
            result: outcome.result,
            reason: outcome.reason,
            identity: outcome.identity,
            dryRun: outcome.dryRun,
            user: parsed.data.request.userInfo?.username,
            warnings: outcome.response.warnings?.length ?? 0,
            ms: Math.round(seconds * 1e4) / 10,
            ...(outcome.result === "denied" && { message: outcome.response.status?.message }),
          },
          "admission",
        );
      }
      return reviewResponse(outcome.response);
    },
  );

  return {
    app,
    metrics,
    setReady: (r) => {
      ready = r;
    },
  };
}

export interface RunningWebhook {
  webhook: Webhook;
  url: string;
  reloadTls(): Promise<boolean>;
  close(): Promise<void>;
}

function digest(...parts: Buffer[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("hex");
}

/** Starts the HTTPS server with the real ServiceAccount look-up; resolves once it listens. */
export async function startWebhook(
  config: WebhookConfig,
  opts: { logger?: Logger; deps?: ReviewDeps } = {},
): Promise<RunningWebhook> {
  // Synchronous writes to stdout: every admission writes an audit line, and pino's default
  // asynchronous destination hands each one to a libuv worker thread whose completion then wakes the
  // event loop again — two thread switches per admission, which on a busy node showed up as latency.
  // A synchronous write is one system call, and no audit line is lost if the process dies.
  const logger =
    opts.logger ??
    pino(
      { level: config.logLevel, base: { component: "webhook" } },
      pino.destination({ dest: 1, sync: true }),
    );
  const [cert, key] = await Promise.all([readFile(config.tlsCertFile), readFile(config.tlsKeyFile)]);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new Error(
      `the TLS certificate ${config.tlsCertFile} and key ${config.tlsKeyFile} do not form a usable pair: ${(e as Error).message}`,
    );
  }
  const metrics = createMetrics();
  let deps = opts.deps;
  if (!deps) {
    const { cachedLookup, kubernetesReaders } = await import("../kube/lookups.ts");
    const { serviceAccountIdentity } = await import("../mutate/identity.ts");
    const { NAMESPACE_POLICY_ANNOTATION, parseSecretPolicy } = await import("../spec/policy.ts");
    const readers = await kubernetesReaders(config.kubeconfig);
    const ttlMs = config.serviceAccountCacheSeconds * 1000;
    const serviceAccounts = cachedLookup(
      (key) => {
        const [ns, name] = key.split("/") as [string, string];
        return readers.serviceAccountAnnotations(ns, name).then(serviceAccountIdentity);
      },
      { ttlMs, onResult: (r) => metrics.serviceAccountLookups.inc({ result: r }) },
    );
    const namespaces = cachedLookup(
      (ns) =>
        readers.namespaceAnnotations(ns).then((a) => parseSecretPolicy(a?.[NAMESPACE_POLICY_ANNOTATION])),
      { ttlMs, onResult: (r) => metrics.namespaceLookups.inc({ result: r }) },
    );
    deps = {
      config: config.injector,
      lookupServiceAccount: (ns, name) => serviceAccounts.lookup(`${ns}/${name}`),
      ...(config.namespacePolicy && { lookupNamespacePolicy: (ns: string) => namespaces.lookup(ns) }),
    };
  }
  const webhook = buildServer({
    deps,
    logger,
    metrics,
    bodyLimitBytes: config.bodyLimitBytes,
    https: { cert, key },
  });
  let current = digest(cert, key);

  const reloadTls = async (): Promise<boolean> => {
    try {
      const [c, k] = await Promise.all([readFile(config.tlsCertFile), readFile(config.tlsKeyFile)]);
      const d = digest(c, k);
      if (d === current) return false;
      // Validate before swapping: a half-rotated pair (new cert, old key) keeps the old one serving.
      createSecureContext({ cert: c, key: k });
      (webhook.app.server as HttpsServer).setSecureContext({ cert: c, key: k, minVersion: "TLSv1.2" });
      current = d;
      metrics.tlsReloads.inc({ result: "ok" });
      logger.info({ certFile: config.tlsCertFile }, "reloaded TLS certificate");
      return true;
    } catch (e) {
      metrics.tlsReloads.inc({ result: "error" });
      logger.warn(
        { err: { message: (e as Error).message } },
        "TLS certificate files changed but could not be loaded; still serving the previous certificate",
      );
      return false;
    }
  };
  const timer = setInterval(() => void reloadTls(), config.tlsReloadIntervalSeconds * 1000);
  timer.unref();

  const address = await webhook.app.listen({ port: config.port, host: config.host });
  logger.info(
    { address, image: config.injector.image, defaultRegion: config.injector.defaultRegion },
    "sm-injector webhook listening",
  );
  let closing: Promise<void> | undefined;
  return {
    webhook,
    url: address,
    reloadTls,
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        webhook.setReady(false);
        await webhook.app.close();
      })();
      return closing;
    },
  };
}
