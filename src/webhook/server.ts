// The admission server: fastify routes around the pure reviewPod(). buildServer() is what tests
// drive with inject(); startWebhook() adds TLS (reloaded when the files change), look-ups of
// ServiceAccounts and graceful shutdown.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Server as HttpsServer } from "node:https";
import type { TLSSocket } from "node:tls";
import { createSecureContext } from "node:tls";
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from "fastify";
import { type Logger, pino } from "pino";
import { DENIALS } from "../admission/denials.ts";
import {
  type AdmissionRequest,
  type AdmissionResponse,
  parseAdmissionReview,
  type ReviewDeps,
  type ReviewOutcome,
  reviewPod,
  reviewResponse,
} from "../admission/review.ts";
import { warmUpDecision } from "../admission/warm-up.ts";
import { auditFields, capText, RESPONSE_MESSAGE_CHARS, RESPONSE_WARNING_CHARS } from "./audit.ts";
import { createBodyBudget, declaredBodyBytes } from "./body-budget.ts";
import type { WebhookConfig } from "./config.ts";
import { admissionUidNearStart, countJsonValues, MAX_JSON_VALUES } from "./json-cost.ts";
import { createMetrics, namespaceLabeler, type WebhookMetrics } from "./metrics.ts";

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

/** Answers one connection may have outstanding (pipelined requests not yet written out). */
const MAX_OUTSTANDING_PER_CONNECTION = 8;

/** A body above this counts as large for the body budget (ordinary pods are 5-50 KB). */
const LARGE_BODY_BYTES = 256 * 1024;

export interface ClientAuth {
  /** Only certificates whose CN or a DNS/URI SAN is one of these (empty: any the CA signed). */
  allowedNames: readonly string[];
}

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

const PROBE_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

/** Why a request's TLS client certificate does not authenticate it, or undefined when it does. */
function clientCertificateProblem(socket: unknown, auth: ClientAuth): string | undefined {
  const tls = socket as Partial<TLSSocket>;
  if (typeof tls.getPeerCertificate !== "function") return "the connection is not TLS";
  if (!tls.authorized) {
    const peer = tls.getPeerCertificate();
    if (!peer || Object.keys(peer).length === 0) return "no client certificate was presented";
    return `the client certificate was not accepted (${String(tls.authorizationError ?? "unknown")})`;
  }
  if (auth.allowedNames.length === 0) return undefined;
  const peer = tls.getPeerCertificate();
  const names = [
    ...(peer.subject?.CN ? [String(peer.subject.CN)] : []),
    ...(peer.subjectaltname ?? "")
      .split(", ")
      .filter((n) => n.startsWith("DNS:") || n.startsWith("URI:"))
      .map((n) => n.slice(n.indexOf(":") + 1)),
  ];
  if (names.some((n) => auth.allowedNames.includes(n))) return undefined;
  return `the client certificate (${capText(names.join(", ") || "no names", 256)}) is not one of --client-allowed-names`;
}

/** The uid of a body that parsed as an AdmissionReview, else undefined. */
function reviewUid(body: unknown): string | undefined {
  const uid = (body as { request?: { uid?: unknown } } | undefined)?.request?.uid;
  return typeof body === "object" && body !== null && typeof uid === "string" && uid !== "" ? uid : undefined;
}

/** Bounds what the API server gets back, whatever the review produced. */
function boundedResponse(r: AdmissionResponse): AdmissionResponse {
  const tooLong =
    (r.status?.message.length ?? 0) > RESPONSE_MESSAGE_CHARS ||
    (r.warnings?.some((w) => w.length > RESPONSE_WARNING_CHARS) ?? false) ||
    (r.warnings?.length ?? 0) > 20;
  if (!tooLong) return r;
  return {
    ...r,
    ...(r.status && { status: { ...r.status, message: capText(r.status.message, RESPONSE_MESSAGE_CHARS) } }),
    ...(r.warnings && { warnings: r.warnings.slice(0, 20).map((w) => capText(w, RESPONSE_WARNING_CHARS)) }),
  };
}

/** The denial for an exception while reviewing: the pod is refused (fail closed), never a bare 500. */
function internalErrorResponse(uid: string, err: unknown): AdmissionResponse {
  const detail = capText(String((err as Error)?.message ?? err), 512);
  return {
    uid,
    allowed: false,
    status: {
      code: 500,
      reason: "InternalError",
      message: `sm-injector: internal error while reviewing this pod (${detail}); the pod was refused so it does not start without its secrets — retry, and report it with the webhook's log if it persists`,
    },
  };
}

export function buildServer(opts: ServerOptions): Webhook {
  const metrics = opts.metrics ?? createMetrics();
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const bodyLimit = opts.bodyLimitBytes ?? 3 * 1024 * 1024;
  const budget = createBodyBudget({ totalBytes: limits.inFlightBodyBytes, largeBodyBytes: LARGE_BODY_BYTES });
  const labelNamespace = namespaceLabeler(opts.namespaceExists);
  const clientAuth = opts.clientAuth;
  if (clientAuth && !opts.https?.ca) throw new Error("client certificate authentication needs a client CA");
  let ready = true;
  const timeouts = serverTimeouts(limits);
  const fastifyOpts: FastifyServerOptions & { https?: Record<string, unknown> } = {
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
        ...timeouts,
        // Ask for a client certificate but let the handshake finish without one: the kubelet's
        // probes and Prometheus present none. /mutate checks socket.authorized per request.
        ...(opts.https.ca && { ca: opts.https.ca, requestCert: true, rejectUnauthorized: false }),
      },
    }),
  };
  const app = Fastify(fastifyOpts) as unknown as FastifyInstance;
  if (opts.https) app.server.maxConnections = limits.maxConnections;

  // AdmissionReviews are JSON; anything else is refused with 415 rather than parsed as text.
  app.removeContentTypeParser("text/plain");
  // Fastify's own JSON parser (prototype-poisoning checks included), behind a count of what the
  // parse would allocate; the body is collected as a Buffer, not a string.
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

  // One callback-style hook (no promise per request) for what must happen before any body byte is
  // read: cut pipelining, authenticate /mutate, reserve the body's bytes.
  // Pipelined requests whose answers the client does not read pile up as queued responses: the API
  // server never pipelines, so a connection with more than a few answers outstanding is cut.
  const outstanding = new WeakMap<object, number>();
  app.addHook("onRequest", (req, reply, done) => {
    const socket = req.raw.socket;
    if (socket) {
      const n = (outstanding.get(socket) ?? 0) + 1;
      if (n > MAX_OUTSTANDING_PER_CONNECTION) {
        metrics.refusedRequests.inc({ reason: "pipelining" });
        reply.hijack();
        socket.destroy();
        return;
      }
      outstanding.set(socket, n);
    }
    if (clientAuth) {
      const path = req.url.split("?")[0] ?? "";
      if (!(req.method === "GET" && PROBE_PATHS.has(path))) {
        const problem = clientCertificateProblem(req.raw.socket, clientAuth);
        if (problem) {
          metrics.refusedRequests.inc({ reason: "client_certificate" });
          if (socket)
            reply.raw.once("close", () => outstanding.set(socket, (outstanding.get(socket) ?? 1) - 1));
          reply.header("connection", "close");
          void reply.code(401).send({
            error: `sm-injector: ${problem}; ${capText(path, 256)} only answers the Kubernetes API server, which must present a client certificate signed by --client-ca-file (see the README, "Authenticating the API server")`,
          });
          return;
        }
      }
    }
    const bytes = declaredBodyBytes(req.headers, bodyLimit);
    const release = bytes === 0 ? noRelease : budget.tryReserve(bytes);
    reply.raw.once("close", () => {
      if (socket) outstanding.set(socket, (outstanding.get(socket) ?? 1) - 1);
      release?.();
    });
    if (!release) {
      metrics.refusedRequests.inc({ reason: "body_budget" });
      reply.header("connection", "close").header("retry-after", "1");
      void reply.code(503).send({
        error: `sm-injector: too many request bodies in flight (${limits.inFlightBodyBytes} bytes at most); retry`,
      });
      return;
    }
    done();
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    const uid = status >= 500 && req.method === "POST" ? reviewUid(req.body) : undefined;
    if (uid !== undefined) {
      // An AdmissionReview came in: whatever failed, the API server gets an AdmissionReview back.
      writeAudit(opts.logger, uid, req.body, err);
      metrics.admissions.inc({ result: "error" });
      metrics.denials.inc({ code: "internal-error" });
      void reply
        .code(200)
        .type("application/json")
        .serializer(JSON.stringify)
        .send(reviewResponse(internalErrorResponse(uid, err)));
      return;
    }
    if (status >= 500) opts.logger.error({ err: { message: capText(err.message, 1024) } }, "request failed");
    metrics.admissions.inc({ result: "error" });
    void reply.code(status).send({ error: `sm-injector: ${capText(err.message, 1024)}` });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({
      error: `sm-injector: no route ${req.method} ${capText(req.url, 256)}; the webhook path is POST /mutate`,
    });
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
      const tooLarge = (req.body as { [TOO_MANY_VALUES]?: string } | undefined)?.[TOO_MANY_VALUES];
      if (tooLarge !== undefined) {
        const outcome = tooManyValuesOutcome(tooLarge);
        metrics.admissions.inc({ result: outcome.result });
        metrics.denials.inc({ code: "too-many-json-values" });
        opts.logger.info(
          auditFields({
            uid: tooLarge,
            user: undefined,
            outcome: { ...outcome, message: outcome.response.status?.message },
            warnings: 0,
            ms: Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10,
          }),
          "admission",
        );
        return reviewResponse(outcome.response);
      }
      const parsed = parseAdmissionReview(req.body);
      if (!parsed.success) {
        metrics.admissions.inc({ result: "error" });
        const issue = parsed.error.issues[0];
        const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
        return reply.code(400).send({
          error: capText(
            `sm-injector: not an AdmissionReview v1: ${where}${issue?.message ?? "invalid"}`,
            1024,
          ),
        });
      }
      const request = parsed.data.request;
      let outcome: ReviewOutcome;
      try {
        outcome = await withDeadline(reviewPod(request, opts.deps), limits.requestTimeoutMs);
      } catch (err) {
        outcome = errorOutcome(request, err);
      }
      const response = boundedResponse(outcome.response);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.admissions.inc({ result: outcome.result });
      metrics.admissionDuration.observe({ result: outcome.result }, seconds);
      if (outcome.denial !== undefined) metrics.denials.inc({ code: outcome.denial });
      if (outcome.result === "injected" && outcome.reason === "injected" && !outcome.dryRun) {
        void labelNamespace(outcome.namespace).then((namespace) => metrics.injections.inc({ namespace }));
      }
      if (outcome.result !== "skipped") {
        // The audit line: who asked for which secrets. Never a value: the webhook never sees one.
        opts.logger.info(
          auditFields({
            uid: request.uid,
            user: request.userInfo?.username,
            outcome: {
              ...outcome,
              message:
                outcome.result === "denied" || outcome.result === "error"
                  ? response.status?.message
                  : undefined,
            },
            warnings: response.warnings?.length ?? 0,
            ms: Math.round(seconds * 1e4) / 10,
          }),
          "admission",
        );
      }
      return reviewResponse(response);
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

/**
 * The review's result, or a rejection once `ms` have passed: a look-up that hangs must not hold the
 * request (and its body) until the API server gives up; the pod is refused with a reason instead.
 */
function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ReviewTimeout(`the review did not finish within ${ms} ms (a slow Kubernetes API look-up?)`),
        ),
      ms,
    );
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** The review's deadline passed (withDeadline): the denial code says `timeout`, not `internal-error`. */
class ReviewTimeout extends Error {}

const noRelease = () => {};

/** Marks a body refused for its number of JSON values, with the request uid read without parsing. */
const TOO_MANY_VALUES = Symbol("too many JSON values");

/** The denial for an AdmissionReview too large to parse: nothing of the pod is known but the uid. */
function tooManyValuesOutcome(uid: string): ReviewOutcome {
  return {
    response: {
      uid,
      allowed: false,
      status: {
        code: DENIALS["too-many-json-values"].status,
        reason: "BadRequest",
        message: `sm-injector: this pod is too large to examine: its AdmissionReview has more than ${MAX_JSON_VALUES.toLocaleString("en")} JSON objects, arrays and elements (annotations, containers, env entries; the API server sends each annotation key once more in managedFields); no pod needs that many — remove annotations or split the pod`,
      },
    },
    result: "denied",
    denial: "too-many-json-values",
    reason: "too many JSON values",
    namespace: "",
    pod: "",
    serviceAccount: "",
    secretIds: [],
    dryRun: false,
  };
}

/** The outcome of a review that threw or timed out: a denial carrying the request's uid. */
function errorOutcome(request: AdmissionRequest, err: unknown): ReviewOutcome {
  const object = request.object as {
    metadata?: { name?: unknown };
    spec?: { serviceAccountName?: unknown };
  } | null;
  return {
    response: internalErrorResponse(request.uid, err),
    result: "error",
    denial: err instanceof ReviewTimeout ? "timeout" : "internal-error",
    reason: "internal error",
    namespace: request.namespace ?? "",
    pod: typeof object?.metadata?.name === "string" ? object.metadata.name : (request.name ?? ""),
    serviceAccount:
      typeof object?.spec?.serviceAccountName === "string" ? object.spec.serviceAccountName : "",
    secretIds: [],
    dryRun: request.dryRun === true,
  };
}

/** The audit line of a request that failed outside the review (e.g. its answer could not be written). */
function writeAudit(logger: Logger, uid: string, body: unknown, err: unknown): void {
  const request = (body as { request?: Record<string, unknown> }).request ?? {};
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  logger.info(
    auditFields({
      uid,
      user: str((request.userInfo as { username?: unknown } | undefined)?.username) || undefined,
      outcome: {
        namespace: str(request.namespace),
        pod: str(request.name),
        serviceAccount: "",
        secretIds: [],
        result: "error",
        denial: "internal-error",
        reason: "internal error",
        dryRun: request.dryRun === true,
        message: internalErrorResponse(uid, err).status?.message,
      },
      warnings: 0,
      ms: 0,
    }),
    "admission",
  );
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

interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/** Reads the certificate files; one error naming every file that cannot be read, and its flag. */
async function readTlsFiles(config: WebhookConfig): Promise<TlsFiles> {
  const wanted: Array<[flag: string, path: string | undefined]> = [
    ["--tls-cert-file", config.tlsCertFile],
    ["--tls-key-file", config.tlsKeyFile],
    ["--client-ca-file", config.clientCaFile],
  ];
  const read = await Promise.allSettled(wanted.map(([, path]) => (path ? readFile(path) : undefined)));
  const problems = read.flatMap((r, i) => {
    if (r.status === "fulfilled") return [];
    const [flag, path] = wanted[i] as [string, string];
    const code = (r.reason as NodeJS.ErrnoException)?.code ?? "error";
    return [`cannot read ${flag} ${path} (${code}: ${(r.reason as Error)?.message ?? r.reason})`];
  });
  if (problems.length > 0) throw new Error(problems.join("; "));
  const [cert, key, ca] = read.map((r) => (r.status === "fulfilled" ? r.value : undefined));
  return { cert: cert as Buffer, key: key as Buffer, ...(ca && { ca }) };
}

/** Throws a message naming the files when they do not form a usable TLS configuration. */
function checkTlsFiles(config: WebhookConfig, files: TlsFiles): void {
  try {
    createSecureContext({ cert: files.cert, key: files.key });
  } catch (e) {
    throw new Error(
      `the TLS certificate ${config.tlsCertFile} and key ${config.tlsKeyFile} do not form a usable pair: ${(e as Error).message}`,
    );
  }
  if (files.ca) {
    const pem = files.ca.toString("latin1");
    try {
      if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in it");
      createSecureContext({ ca: files.ca });
    } catch (e) {
      throw new Error(
        `the client CA file ${config.clientCaFile} is not a PEM CA certificate: ${(e as Error).message}`,
      );
    }
  }
}

/** The real look-ups through the Kubernetes API, cached (see lookups.ts). */
async function kubernetesDeps(
  config: WebhookConfig,
  metrics: WebhookMetrics,
  logger: Logger,
): Promise<{ deps: ReviewDeps; namespaceExists: (ns: string) => Promise<boolean> }> {
  const { cachedLookup, InvalidNameError, kubernetesReaders } = await import("../kube/lookups.ts");
  const { serviceAccountIdentity } = await import("../mutate/identity.ts");
  const { namespacePolicy } = await import("../spec/policy.ts");
  const readers = await kubernetesReaders(config.kubeconfig);
  const ttlMs = config.serviceAccountCacheSeconds * 1000;
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

/** Starts the HTTPS server with the real ServiceAccount look-up; resolves once it listens. */
export async function startWebhook(config: WebhookConfig): Promise<RunningWebhook> {
  // Synchronous writes to stdout: every admission writes an audit line, and pino's default
  // asynchronous destination hands each one to a libuv worker thread whose completion then wakes the
  // event loop again — two thread switches per admission, which on a busy node showed up as latency.
  // A synchronous write is one system call, and no audit line is lost if the process dies.
  const logger = pino(
    { level: config.logLevel, base: { component: "webhook" } },
    pino.destination({ dest: 1, sync: true }),
  );
  const files = await readTlsFiles(config);
  checkTlsFiles(config, files);
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
  });
  let current = digest(files.cert, files.key, files.ca ?? Buffer.alloc(0));

  const reloadTls = async (): Promise<boolean> => {
    try {
      const next = await readTlsFiles(config);
      const d = digest(next.cert, next.key, next.ca ?? Buffer.alloc(0));
      if (d === current) return false;
      // Validate before swapping: a half-rotated pair (new cert, old key) keeps the old one serving.
      checkTlsFiles(config, next);
      (webhook.app.server as HttpsServer).setSecureContext({ ...next, minVersion: "TLSv1.2" });
      current = d;
      metrics.tlsReloads.inc({ result: "ok" });
      logger.info(
        { certFile: config.tlsCertFile, clientCaFile: config.clientCaFile },
        "reloaded TLS certificate",
      );
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

  const warmUpMs = warmUpDecision(config.injector);
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
