// A small HTTP proxy in front of moto that injects faults per request: throttling, access denied,
// any AWS error, 5xx, connection resets, hangs, and an added round-trip delay. It counts requests
// by operation (X-Amz-Target for Secrets Manager, Action for STS) so tests and benchmarks can
// assert how many AWS calls were made. Errors are JSON for Secrets Manager (awsJson1.1) and XML
// for STS (awsQuery), as AWS sends them.
import http from "node:http";
import type { AddressInfo } from "node:net";

export type Fault =
  /** HTTP 400 ThrottlingException "Rate exceeded". */
  | { kind: "throttle" }
  /** HTTP 400 AccessDeniedException (AccessDenied for STS). */
  | { kind: "access-denied"; message?: string }
  /** Any AWS error: HTTP `status` with error code `type` (default InternalServiceError). */
  | { kind: "status"; status: number; type?: string; message?: string }
  /** The connection is destroyed without an answer. */
  | { kind: "reset" }
  /** No answer at all (until the client gives up). */
  | { kind: "hang" }
  /** Any answer: HTTP `status` (default 200) with exactly `body` (a malformed or empty response). */
  | { kind: "body"; status?: number; body: string | Buffer };

export interface FaultProxy {
  endpoint: string;
  /** Requests seen, by operation (e.g. "secretsmanager.GetSecretValue", "sts.AssumeRoleWithWebIdentity"). */
  counts: Map<string, number>;
  count(op: string): number;
  /** Faults to inject, in order, for requests of `op`; each fault is used once. */
  inject(op: string, ...faults: Fault[]): void;
  /** Inject this fault into every request of `op` until cleared. */
  always(op: string, fault: Fault | undefined): void;
  /** Extra delay added to every request, in ms (a simulated round trip). */
  delayMs: number;
  /** The most requests that were in flight at once since the last reset. */
  readonly maxInFlight: number;
  /** TCP connections clients opened to the proxy since the last reset (keep-alive reuses them). */
  readonly connections: number;
  /** Access key ids that signed requests (from Authorization: … Credential=AKID/…), in order. */
  accessKeys: string[];
  /** User-Agent headers of the requests, in order. */
  userAgents: string[];
  reset(): void;
  close(): Promise<void>;
}

function operationOf(req: http.IncomingMessage, body: Buffer): string {
  const target = req.headers["x-amz-target"];
  if (typeof target === "string") return target;
  const action =
    /(?:^|&)Action=([A-Za-z]+)/.exec(body.toString("utf8"))?.[1] ??
    /[?&]Action=([A-Za-z]+)/.exec(req.url ?? "")?.[1];
  return action ? `sts.${action}` : `other ${req.method} ${req.url}`;
}

function sendError(
  res: http.ServerResponse,
  protocol: "json" | "xml",
  fault: Exclude<Fault, { kind: "reset" } | { kind: "hang" } | { kind: "body" }>,
): void {
  const xml = protocol === "xml";
  const [status, type, message] =
    fault.kind === "throttle"
      ? [400, xml ? "Throttling" : "ThrottlingException", "Rate exceeded"]
      : fault.kind === "access-denied"
        ? [
            xml ? 403 : 400,
            xml ? "AccessDenied" : "AccessDeniedException",
            fault.message ??
              "User: arn:aws:sts::123456789012:assumed-role/erp-api/pod is not authorized to perform: secretsmanager:GetSecretValue because no identity-based policy allows the secretsmanager:GetSecretValue action",
          ]
        : [fault.status, fault.type ?? "InternalServiceError", fault.message ?? "injected failure"];
  if (!xml) {
    res.writeHead(status, {
      "content-type": "application/x-amz-json-1.1",
      "x-amzn-errortype": type,
      "x-amzn-requestid": "fault-proxy",
    });
    res.end(JSON.stringify({ __type: type, message }));
    return;
  }
  const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": "fault-proxy" });
  res.end(
    `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${esc(type)}</Code><Message>${esc(message)}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>`,
  );
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const queued = new Map<string, Fault[]>();
  const persistent = new Map<string, Fault>();
  const counts = new Map<string, number>();
  let inFlight = 0;
  let maxInFlight = 0;
  let connections = 0;
  const sockets = new Set<import("node:net").Socket>();
  const self: FaultProxy = {
    endpoint: "",
    counts,
    count: (op) => counts.get(op) ?? 0,
    inject(op, ...faults) {
      queued.set(op, [...(queued.get(op) ?? []), ...faults]);
    },
    always(op, fault) {
      if (fault) persistent.set(op, fault);
      else persistent.delete(op);
    },
    delayMs: 0,
    get maxInFlight() {
      return maxInFlight;
    },
    get connections() {
      return connections;
    },
    accessKeys: [],
    userAgents: [],
    reset() {
      queued.clear();
      persistent.clear();
      counts.clear();
      self.delayMs = 0;
      self.accessKeys.length = 0;
      self.userAgents.length = 0;
      maxInFlight = inFlight;
      connections = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        agent.destroy();
        server.close(() => resolve());
      }),
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const op = operationOf(req, body);
      counts.set(op, (counts.get(op) ?? 0) + 1);
      const akid = /Credential=([^/,\s]+)\//.exec(String(req.headers.authorization ?? ""))?.[1];
      if (akid) self.accessKeys.push(akid);
      self.userAgents.push(String(req.headers["user-agent"] ?? ""));
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      let counted = true;
      const done = () => {
        if (counted) inFlight--;
        counted = false;
      };
      res.on("close", done);
      const fault = queued.get(op)?.shift() ?? persistent.get(op);
      const go = () => {
        if (fault?.kind === "reset") {
          req.socket.destroy();
          return;
        }
        if (fault?.kind === "hang") return;
        if (fault?.kind === "body") {
          res.writeHead(fault.status ?? 200, {
            "content-type": op.startsWith("sts.") ? "text/xml" : "application/x-amz-json-1.1",
            "x-amzn-requestid": "fault-proxy",
          });
          res.end(fault.body);
          return;
        }
        if (fault) {
          sendError(res, op.startsWith("sts.") ? "xml" : "json", fault);
          return;
        }
        const up = http.request(
          {
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            agent,
            headers: req.headers,
          },
          (ures) => {
            // Hop-by-hop headers stay on their hop: moto's server answers HTTP/1.0 with
            // `Connection: close`, which would otherwise stop clients from keeping connections alive.
            const { connection: _c, "keep-alive": _k, ...headers } = ures.headers;
            res.writeHead(ures.statusCode ?? 502, headers);
            ures.pipe(res);
          },
        );
        up.on("error", () => req.socket.destroy());
        up.end(body);
      };
      if (self.delayMs > 0) setTimeout(go, self.delayMs);
      else go();
    });
  });
  server.on("connection", (s) => {
    connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  self.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return self;
}
