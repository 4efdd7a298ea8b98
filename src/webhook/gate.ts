// What must happen before any body byte is read, in one callback-style onRequest hook (no promise
// per request): cut pipelining, authenticate /mutate by client certificate, reserve the body's bytes.
import type { TLSSocket } from "node:tls";
import type { onRequestHookHandler } from "fastify";
import { capText } from "./audit.ts";
import { type BodyBudget, declaredBodyBytes } from "./body-budget.ts";
import type { WebhookMetrics } from "./metrics.ts";

export interface ClientAuth {
  /** Only certificates whose CN or a DNS/URI SAN is one of these (empty: any the CA signed). */
  allowedNames: readonly string[];
}

/** Answers one connection may have outstanding (pipelined requests not yet written out). */
const MAX_OUTSTANDING_PER_CONNECTION = 8;

/** Probes and metrics answer without a client certificate (the kubelet and Prometheus have none). */
const PROBE_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

/** Why a request's TLS client certificate does not authenticate it, or undefined when it does. */
export function clientCertificateProblem(socket: unknown, auth: ClientAuth): string | undefined {
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

export interface GateOptions {
  metrics: WebhookMetrics;
  clientAuth: ClientAuth | undefined;
  bodyLimit: number;
  budget: BodyBudget;
  /** The budget's size, for the 503's message. */
  inFlightBodyBytes: number;
}

const noRelease = () => {};

/**
 * The onRequest hook. Pipelined requests whose answers the client does not read pile up as queued
 * responses: the API server never pipelines, so a connection with more than a few answers
 * outstanding is cut.
 */
export function requestGate(opts: GateOptions): onRequestHookHandler {
  const { metrics, clientAuth, bodyLimit, budget } = opts;
  const outstanding = new WeakMap<object, number>();
  const settle = (socket: object | null) => {
    if (socket) outstanding.set(socket, (outstanding.get(socket) ?? 1) - 1);
  };
  return (req, reply, done) => {
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
      const problem =
        req.method === "GET" && PROBE_PATHS.has(path)
          ? undefined
          : clientCertificateProblem(req.raw.socket, clientAuth);
      if (problem) {
        metrics.refusedRequests.inc({ reason: "client_certificate" });
        reply.raw.once("close", () => settle(socket));
        reply.header("connection", "close");
        void reply.code(401).send({
          error: `sm-injector: ${problem}; ${capText(path, 256)} only answers the Kubernetes API server, which must present a client certificate signed by --client-ca-file (see the README, "Authenticating the API server")`,
        });
        return;
      }
    }
    const bytes = declaredBodyBytes(req.headers, bodyLimit);
    const release = bytes === 0 ? noRelease : budget.tryReserve(bytes);
    reply.raw.once("close", () => {
      settle(socket);
      release?.();
    });
    if (!release) {
      metrics.refusedRequests.inc({ reason: "body_budget" });
      reply.header("connection", "close").header("retry-after", "1");
      void reply.code(503).send({
        error: `sm-injector: too many request bodies in flight (${opts.inFlightBodyBytes} bytes at most); retry`,
      });
      return;
    }
    done();
  };
}
