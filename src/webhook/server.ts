// The admission server: fastify with its limits, the request gate (gate.ts) and the routes
// (routes.ts) around the pure reviewPod(). buildServer() is what tests drive with inject(); the
// wiring (TLS files, Kubernetes look-ups, listening, signals) lives in src/cli/webhook.ts.
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from "fastify";
import type { Logger } from "pino";
import type { ReviewDeps } from "../admission/review.ts";
import { createBodyBudget } from "./body-budget.ts";
import { type ClientAuth, requestGate } from "./gate.ts";
import { admissionUidNearStart, countJsonValues, MAX_JSON_VALUES } from "./json-cost.ts";
import { createMetrics, namespaceLabeler, type WebhookMetrics } from "./metrics.ts";
import {
  type Readiness,
  registerErrorHandlers,
  registerMutate,
  registerProbes,
  TOO_MANY_VALUES,
} from "./routes.ts";

export type { ClientAuth } from "./gate.ts";

/**
 * Limits on what a client can hold: every timeout is below the API server's admission timeout (a
 * request still arriving after it is useless), and connections and bodies in flight are capped so
 * that slow or idle clients cannot exhaust memory.
 */
export interface ConnectionLimits {
  /** TLS handshake, request head and body must all arrive within this; idle keep-alive sockets close after it. */
  requestTimeoutMs: number;
  /** Open connections at most; more are closed at accept. */
  maxConnections: number;
  /** Bytes of request bodies in flight at most (see body-budget.ts). */
  inFlightBodyBytes: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  requestTimeoutMs: 4000,
  maxConnections: 512,
  inFlightBodyBytes: 32 * 1024 * 1024,
};

/** A body above this counts as large for the body budget (ordinary pods are 5-50 KB). */
const LARGE_BODY_BYTES = 256 * 1024;

export interface ServerOptions {
  deps: ReviewDeps;
  logger: Logger;
  metrics?: WebhookMetrics;
  bodyLimitBytes?: number;
  /** `ca`: the CA of API server client certificates, with clientAuth. */
  https?: { cert: Buffer; key: Buffer; ca?: Buffer };
  limits?: Partial<ConnectionLimits>;
  /** Require a client certificate on /mutate (probes and /metrics stay open). Needs https.ca. */
  clientAuth?: ClientAuth;
  /** Whether a namespace exists, for the injections metric's label (default: not checked). */
  namespaceExists?: (namespace: string) => Promise<boolean>;
  /** Whether /readyz says ready from the start (default true); false until setReady(true), e.g. after warm-up. */
  ready?: boolean;
}

export interface Webhook {
  app: FastifyInstance;
  metrics: WebhookMetrics;
  /** true: ready for admissions; false: draining (or, before the first true, still starting). */
  setReady(ready: boolean): void;
}

export function buildServer(opts: ServerOptions): Webhook {
  const metrics = opts.metrics ?? createMetrics();
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const bodyLimit = opts.bodyLimitBytes ?? 3 * 1024 * 1024;
  if (opts.clientAuth && !opts.https?.ca)
    throw new Error("client certificate authentication needs a client CA");
  const app = Fastify(fastifyOptions(opts, limits, bodyLimit)) as unknown as FastifyInstance;
  if (opts.https) app.server.maxConnections = limits.maxConnections;
  installJsonParser(app);
  app.addHook(
    "onRequest",
    requestGate({
      metrics,
      clientAuth: opts.clientAuth,
      bodyLimit,
      budget: createBodyBudget({ totalBytes: limits.inFlightBodyBytes, largeBodyBytes: LARGE_BODY_BYTES }),
      inFlightBodyBytes: limits.inFlightBodyBytes,
    }),
  );
  registerErrorHandlers(app, opts.logger, metrics);
  let readiness: Readiness = opts.ready === false ? "starting" : "ready";
  registerProbes(app, metrics, () => readiness);
  registerMutate(app, {
    deps: opts.deps,
    logger: opts.logger,
    metrics,
    requestTimeoutMs: limits.requestTimeoutMs,
    labelNamespace: namespaceLabeler(opts.namespaceExists),
  });
  return {
    app,
    metrics,
    setReady: (r) => {
      readiness = r ? "ready" : readiness === "starting" ? "starting" : "draining";
    },
  };
}

/** Node's TLS and HTTP server options for the limits (fastify copies some of them again itself). */
function serverTimeouts(limits: ConnectionLimits) {
  const ms = limits.requestTimeoutMs;
  return {
    handshakeTimeout: ms,
    headersTimeout: ms,
    requestTimeout: ms,
    keepAliveTimeout: ms,
    // Node checks request deadlines on this interval (default 30 s, far past a 4 s timeout).
    connectionsCheckingInterval: Math.min(1000, ms),
  };
}

function fastifyOptions(
  opts: ServerOptions,
  limits: ConnectionLimits,
  bodyLimit: number,
): FastifyServerOptions & { https?: Record<string, unknown> } {
  return {
    loggerInstance: opts.logger,
    // No per-request lines: the audit line per admission says what matters (fastify's replacement for
    // the deprecated top-level disableRequestLogging, FSTDEP023).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    return503OnClosing: true,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.requestTimeoutMs,
    // Socket inactivity (e.g. a client that never reads its response): closed after this.
    connectionTimeout: limits.requestTimeoutMs,
    ...(opts.https && {
      https: {
        cert: opts.https.cert,
        key: opts.https.key,
        minVersion: "TLSv1.2" as const,
        ...serverTimeouts(limits),
        // Ask for a client certificate but let the handshake finish without one: the kubelet's
        // probes and Prometheus present none. /mutate checks socket.authorized per request.
        ...(opts.https.ca && { ca: opts.https.ca, requestCert: true, rejectUnauthorized: false }),
      },
    }),
  };
}

/**
 * AdmissionReviews are JSON; anything else is refused with 415 rather than parsed as text. Fastify's
 * own JSON parser (prototype-poisoning checks included) runs behind a count of what the parse would
 * allocate; the body is collected as a Buffer, not a string.
 */
function installJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser("text/plain");
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (req, body, done) => {
    const values = countJsonValues(body as Buffer);
    if (values > MAX_JSON_VALUES) {
      const uid = admissionUidNearStart(body as Buffer);
      if (uid !== undefined) {
        done(null, { [TOO_MANY_VALUES]: uid });
        return;
      }
      const err = new Error(
        `the body has more than ${MAX_JSON_VALUES} JSON objects, arrays and elements; no pod needs that many`,
      );
      done(Object.assign(err, { statusCode: 400 }), undefined);
      return;
    }
    // Fastify types the default parser for strings; it parses Buffers too (secure-json-parse).
    parseJson(req, body as unknown as string, done);
  });
}
