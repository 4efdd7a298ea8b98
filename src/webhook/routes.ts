// The routes: POST /mutate (AdmissionReview in, AdmissionReview out, around the pure reviewPod),
// the probes, /metrics, and the answers for what fails outside a route. Whatever happens to a body
// that parsed as an AdmissionReview, the API server gets an AdmissionReview back and an audit line
// is written.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { DENIALS } from "../admission/denials.ts";
import { type AdmissionResponse, deniedResponse, reviewResponse } from "../admission/responses.ts";
import {
  type AdmissionRequest,
  parseAdmissionReview,
  type ReviewDeps,
  type ReviewOutcome,
  reviewPod,
} from "../admission/review.ts";
import { auditFields, capText, RESPONSE_MESSAGE_CHARS, RESPONSE_WARNING_CHARS } from "./audit.ts";
import { MAX_JSON_VALUES } from "./json-cost.ts";
import type { WebhookMetrics } from "./metrics.ts";

export interface RouteContext {
  deps: ReviewDeps;
  logger: Logger;
  metrics: WebhookMetrics;
  requestTimeoutMs: number;
  /** The injections metric's namespace label (bounded, see metrics.ts). */
  labelNamespace: (namespace: string) => Promise<string>;
}

/** Where the webhook is in its life, as /readyz reports it. */
export type Readiness = "starting" | "ready" | "draining";

/** Marks a body refused for its number of JSON values, with the request uid read without parsing. */
export const TOO_MANY_VALUES = Symbol("too many JSON values");

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

/** /healthz (alive), /readyz (ready for admissions: warmed up and not draining), /metrics. */
export function registerProbes(
  app: FastifyInstance,
  metrics: WebhookMetrics,
  readiness: () => Readiness,
): void {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    const state = readiness();
    if (state === "starting") return reply.code(503).send({ status: "starting" });
    if (state === "draining") return reply.code(503).send({ status: "shutting down" });
    return { status: "ok" };
  });
  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}

/** POST /mutate. */
export function registerMutate(app: FastifyInstance, ctx: RouteContext): void {
  app.post(
    "/mutate",
    { schema: { response: { 200: admissionResponseSchema, 400: errorSchema } } },
    (req, reply) => mutate(req, reply, ctx),
  );
}

async function mutate(req: FastifyRequest, reply: FastifyReply, ctx: RouteContext) {
  const started = process.hrtime.bigint();
  const tooLarge = (req.body as { [TOO_MANY_VALUES]?: string } | undefined)?.[TOO_MANY_VALUES];
  if (tooLarge !== undefined) return tooManyValues(tooLarge, started, ctx);
  const parsed = parseAdmissionReview(req.body);
  if (!parsed.success) {
    ctx.metrics.admissions.inc({ result: "error" });
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    return reply.code(400).send({
      error: capText(`sm-injector: not an AdmissionReview v1: ${where}${issue?.message ?? "invalid"}`, 1024),
    });
  }
  const request = parsed.data.request;
  let outcome: ReviewOutcome;
  try {
    outcome = await withDeadline(reviewPod(request, ctx.deps), ctx.requestTimeoutMs);
  } catch (err) {
    outcome = errorOutcome(request, err);
  }
  const response = boundedResponse(outcome.response);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  count(outcome, seconds, ctx);
  if (outcome.result !== "skipped") {
    // The audit line: who asked for which secrets. Never a value: the webhook never sees one.
    const refused = outcome.result === "denied" || outcome.result === "error";
    ctx.logger.info(
      auditFields({
        uid: request.uid,
        user: request.userInfo?.username,
        outcome: { ...outcome, message: refused ? response.status?.message : undefined },
        warnings: response.warnings?.length ?? 0,
        ms: Math.round(seconds * 1e4) / 10,
      }),
      "admission",
    );
  }
  return reviewResponse(response);
}

/** The admission's metrics: result, duration, denial code, and an injection by namespace. */
function count(outcome: ReviewOutcome, seconds: number, ctx: RouteContext): void {
  const { metrics } = ctx;
  metrics.admissions.inc({ result: outcome.result });
  metrics.admissionDuration.observe({ result: outcome.result }, seconds);
  if (outcome.denial !== undefined) metrics.denials.inc({ code: outcome.denial });
  if (outcome.result === "injected" && outcome.reason === "injected" && !outcome.dryRun) {
    void ctx.labelNamespace(outcome.namespace).then((namespace) => metrics.injections.inc({ namespace }));
  }
}

/** The denial of an AdmissionReview too large to parse: nothing of the pod is known but the uid. */
function tooManyValues(uid: string, started: bigint, ctx: RouteContext) {
  const outcome = tooManyValuesOutcome(uid);
  ctx.metrics.admissions.inc({ result: outcome.result });
  ctx.metrics.denials.inc({ code: "too-many-json-values" });
  ctx.logger.info(
    auditFields({
      uid,
      user: undefined,
      outcome: { ...outcome, message: outcome.response.status?.message },
      warnings: 0,
      ms: Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10,
    }),
    "admission",
  );
  return reviewResponse(outcome.response);
}

/** Answers for what fails outside a route (a body that cannot be parsed, an answer that cannot be written) and unknown paths. */
export function registerErrorHandlers(app: FastifyInstance, logger: Logger, metrics: WebhookMetrics): void {
  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    const uid = status >= 500 && req.method === "POST" ? reviewUid(req.body) : undefined;
    if (uid !== undefined) {
      // An AdmissionReview came in: whatever failed, the API server gets an AdmissionReview back.
      writeAudit(logger, uid, req.body, err);
      metrics.admissions.inc({ result: "error" });
      metrics.denials.inc({ code: "internal-error" });
      void reply
        .code(200)
        .type("application/json")
        .serializer(JSON.stringify)
        .send(reviewResponse(internalErrorResponse(uid, err)));
      return;
    }
    if (status >= 500) logger.error({ err: { message: capText(err.message, 1024) } }, "request failed");
    metrics.admissions.inc({ result: "error" });
    void reply.code(status).send({ error: `sm-injector: ${capText(err.message, 1024)}` });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({
      error: `sm-injector: no route ${req.method} ${capText(req.url, 256)}; the webhook path is POST /mutate`,
    });
  });
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
  return deniedResponse(
    uid,
    DENIALS["internal-error"].status,
    `sm-injector: internal error while reviewing this pod (${detail}); the pod was refused so it does not start without its secrets — retry, and report it with the webhook's log if it persists`,
  );
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

/** The denial for an AdmissionReview too large to parse. */
function tooManyValuesOutcome(uid: string): ReviewOutcome {
  return {
    response: deniedResponse(
      uid,
      DENIALS["too-many-json-values"].status,
      `sm-injector: this pod is too large to examine: its AdmissionReview has more than ${MAX_JSON_VALUES.toLocaleString("en")} JSON objects, arrays and elements (annotations, containers, env entries; the API server sends each annotation key once more in managedFields); no pod needs that many — remove annotations or split the pod`,
    ),
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
