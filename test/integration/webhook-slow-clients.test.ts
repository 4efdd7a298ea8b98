// Slow and hostile clients against the real bundled webhook over real TLS (loopback): bodies that
// trickle, connections that idle or never start TLS, many unfinished large bodies, more connections
// than the cap. None of them may hold the webhook's memory or sockets past the request timeout,
// and a legitimate AdmissionReview is still answered while they try.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import {
  connect,
  rssMiB,
  type Target,
  timeUntilClosed,
  trickle,
  unfinishedBody,
} from "../helpers/slow-clients.ts";
import { admissionReview, startWebhookProcess, type WebhookProcess } from "../helpers/webhook.ts";

// The defaults (request timeout 4 s, checked every second) plus a lower connection cap for the test.
const MAX_CONNECTIONS = 150;
// Generous: the timeout is 4 s; the old server kept all of these open for minutes.
const CLOSED_WITHIN_MS = 10_000;

const pod = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { generateName: "api-", namespace: "erp", labels: { "sm-injector.io/inject": "true" } },
  spec: {
    securityContext: { runAsUser: 1000 },
    containers: [
      {
        name: "api",
        image: "api:1",
        command: ["app"],
        // An IRSA identity of its own: no ServiceAccount look-up (this webhook has no API server).
        env: [
          { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/api" },
          {
            name: "AWS_WEB_IDENTITY_TOKEN_FILE",
            value: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
          },
        ],
      },
    ],
  },
};
const legitimate = () =>
  admissionReview({
    ...pod,
    metadata: { ...pod.metadata, annotations: { "sm-injector.io/env.A": "erp/a/b" } },
  });

describe("sm-injector webhook under slow clients", () => {
  let wh: WebhookProcess;
  let target: Target;
  before(async () => {
    wh = await startWebhookProcess({
      args: [
        "--namespace-policy",
        "false",
        "--default-region",
        "eu-west-1",
        "--max-connections",
        String(MAX_CONNECTIONS),
      ],
    });
    target = { port: wh.port, caPem: wh.ca.certPem };
  });
  after(async () => {
    await wh?.stop();
  });

  test("a request body that trickles one byte every 500 ms is cut off within 10 s", async () => {
    const s = await connect(target);
    trickle(s, 100_000, 500);
    const r = await timeUntilClosed(s, CLOSED_WITHIN_MS + 5000);
    assert.ok(r.closed && r.ms <= CLOSED_WITHIN_MS, `still open after ${r.ms} ms`);
  });

  test("an idle keep-alive connection is closed within 10 s", async () => {
    const s = await connect(target);
    s.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const r = await timeUntilClosed(s, CLOSED_WITHIN_MS + 5000);
    assert.ok(r.closed && r.ms <= CLOSED_WITHIN_MS, `still open after ${r.ms} ms`);
  });

  test("a connection that never starts its TLS handshake is closed within 10 s", async () => {
    const s = net.connect(wh.port, "127.0.0.1");
    await new Promise((resolve) => s.once("connect", resolve));
    const r = await timeUntilClosed(s as unknown as TLSSocket, CLOSED_WITHIN_MS + 5000);
    assert.ok(r.closed && r.ms <= CLOSED_WITHIN_MS, `still open after ${r.ms} ms`);
  });

  test("a client that pipelines 100,000 requests and never reads the answers is cut off, holding < 32 MiB", async () => {
    const pid = wh.process.child.pid as number;
    const baseline = rssMiB(pid);
    const s = await connect(target);
    s.on("error", () => {});
    s.pause(); // never reads
    let closed = false;
    s.once("close", () => {
      closed = true;
    });
    const heads = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(2000);
    for (let i = 0; i < 50 && !s.destroyed; i++) s.write(heads);
    let peak = baseline;
    for (const t0 = Date.now(); !closed && Date.now() - t0 < CLOSED_WITHIN_MS; ) {
      peak = Math.max(peak, rssMiB(pid));
      await new Promise((r) => setTimeout(r, 50));
    }
    s.destroy();
    assert.ok(closed, "the connection is still open");
    assert.ok(peak - baseline < 32, `RSS grew from ${baseline} to ${peak} MiB`);
  });

  test("60 unfinished 2.5 MB bodies hold < 64 MiB; a legitimate AdmissionReview is answered meanwhile", async () => {
    const pid = wh.process.child.pid as number;
    await wh.post("/mutate", legitimate());
    const baseline = rssMiB(pid);
    const sockets: TLSSocket[] = [];
    try {
      for (let i = 0; i < 60; i++) {
        const s = await connect(target);
        s.on("error", () => {});
        sockets.push(s);
        await unfinishedBody(s, 2_500_000);
      }
      const during = rssMiB(pid);
      const t0 = performance.now();
      const res = await wh.post("/mutate", legitimate());
      const ms = Math.round(performance.now() - t0);
      assert.equal(res.status, 200, res.body);
      const answer = JSON.parse(res.body) as { response: { allowed: boolean; patch?: string } };
      assert.equal(answer.response.allowed, true, res.body);
      assert.ok(answer.response.patch, "the legitimate pod was not injected");
      process.stderr.write(
        `RSS ${baseline} MiB before, ${during} MiB with 60 unfinished bodies; answer in ${ms} ms\n`,
      );
      assert.ok(during - baseline < 64, `RSS grew from ${baseline} to ${during} MiB`);
      assert.ok((await wh.metric("sm_injector_refused_requests_total", { reason: "body_budget" })) >= 40);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  test(`connections beyond --max-connections (${MAX_CONNECTIONS}) are closed at once`, async () => {
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS + 100; i++) {
        const s = net.connect(wh.port, "127.0.0.1");
        s.on("error", () => {});
        sockets.push(s);
      }
      await new Promise((r) => setTimeout(r, 1000));
      const open = sockets.filter((s) => !s.destroyed && s.readyState === "open").length;
      assert.ok(open <= MAX_CONNECTIONS, `${open} connections open`);
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Once they are gone, the webhook serves again.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await wh.get("/healthz")).status, 200);
  });
});
