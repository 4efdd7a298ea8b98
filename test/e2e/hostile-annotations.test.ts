// Hostile tenants through the real kube-apiserver and the chart's webhook configuration: pods whose
// annotations are built to stall, bloat or trick the webhook are refused promptly with
// sm-injector's own message, the webhook stays within its chart memory limit, and a normal pod
// created at the same moment is still injected.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { apiError, INIT_CONTAINER, INJECT_LABEL, useE2E, WEBHOOK_NAME } from "./harness/env.ts";

const NS = "tenant";
const PINNED_NS = "pinned";
const ROLE_ARN = "arn:aws:iam::123456789012:role/tenant-app";
/** The chart's memory limit for the webhook container. */
const CHART_MEMORY_LIMIT_BYTES = 256 * 2 ** 20;
const DENIED = new RegExp(`^admission webhook "${WEBHOOK_NAME}" denied the request: sm-injector: `);

const env = useE2E(
  { before, after },
  {
    setup: async (e) => {
      await e.createNamespace(NS, { serviceAccounts: { app: { "eks.amazonaws.com/role-arn": ROLE_ARN } } });
      await e.createNamespace(PINNED_NS, {
        annotations: {
          "sm-injector.io/allowed-secrets":
            "erp/production/*, arn:aws:secretsmanager:*:123456789012:secret:erp/production/*",
        },
        serviceAccounts: { app: { "eks.amazonaws.com/role-arn": ROLE_ARN } },
      });
    },
  },
);

function pod(
  name: string,
  annotations: Record<string, string>,
  spec: Partial<NonNullable<V1Pod["spec"]>> = {},
): V1Pod {
  return {
    metadata: { name, labels: { [INJECT_LABEL]: "true" }, annotations },
    spec: {
      serviceAccountName: "app",
      containers: [{ name: "app", image: "registry.example.com/app:1", command: ["/app"] }],
      ...spec,
    },
  };
}

const NORMAL = { "sm-injector.io/env.DATABASE_URL": "erp/production/database#DATABASE_URL" };

/** Creates the pod and returns the API server's refusal; fails if the pod was admitted. */
async function refusal(body: V1Pod, namespace = NS): Promise<{ code: number | undefined; message: string }> {
  try {
    await env().core.createNamespacedPod({ namespace, body });
  } catch (e) {
    return apiError(e);
  }
  assert.fail(`pod ${body.metadata?.name} was admitted`);
}

/** Peak resident memory of the webhook process so far (Linux VmHWM). */
function webhookPeakRss(): number {
  const status = readFileSync(`/proc/${env().webhook.process.pid}/status`, "utf8");
  const kib = Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]);
  assert.ok(kib > 0, "no VmHWM for the webhook process");
  return kib * 1024;
}

describe("oversized annotations", () => {
  test("a 1.4 MB sm-injector.io/secrets annotation is refused naming the limit, while a normal pod created at the same moment is injected", async (t) => {
    const hostile = pod("keys-bomb", {
      "sm-injector.io/secrets": `- secret: a\n  keys: [${Array(700_000).fill("x").join(",")}]`,
    });
    const [bomb, normal] = await Promise.allSettled([
      env().core.createNamespacedPod({ namespace: NS, body: hostile }),
      env().core.createNamespacedPod({ namespace: NS, body: pod("normal", NORMAL) }),
    ]);
    assert.equal(bomb.status, "rejected", "the 1.4 MB pod was admitted");
    const { message } = apiError(bomb.reason);
    assert.match(message, DENIED);
    assert.match(message, /sm-injector\.io\/secrets is 1,400,0\d\d bytes; the limit is 64 KiB/);
    assert.ok(message.length < 4096, `the denial is ${message.length} characters`);

    assert.equal(
      normal.status,
      "fulfilled",
      `the normal pod was refused: ${normal.status === "rejected" ? apiError(normal.reason).message : ""}`,
    );
    assert.ok(
      normal.value.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER),
      "the normal pod was not injected",
    );
    const peak = webhookPeakRss();
    t.diagnostic(`webhook peak RSS ${Math.round(peak / 2 ** 20)} MiB`);
    assert.ok(peak < CHART_MEMORY_LIMIT_BYTES, `webhook peak RSS ${peak} bytes`);
  });

  test("six unknown 200 KB annotation keys are refused promptly with a bounded message", async () => {
    const annotations: Record<string, string> = { ...NORMAL };
    for (let i = 0; i < 6; i++) annotations[`sm-injector.io/${i}${"q".repeat(200_000)}`] = "1";
    const started = Date.now();
    const { message } = await refusal(pod("long-keys", annotations));
    const seconds = (Date.now() - started) / 1000;
    assert.match(message, DENIED);
    assert.match(message, /is 200,016 bytes; the limit is 78/);
    assert.ok(message.length < 4096, `the denial is ${message.length} characters`);
    assert.ok(seconds < 4, `answered after ${seconds} s`);
  });

  test("40,000 bad annotations are refused promptly with a bounded message", async (t) => {
    const annotations: Record<string, string> = {};
    // Short keys: the API server sends each twice (annotations and managedFields) and the review
    // must stay under the webhook's 3 MiB body limit to reach the annotation check.
    for (let i = 0; i < 40_000; i++) annotations[`sm-injector.io/${i}`] = "x";
    const started = Date.now();
    const { message } = await refusal(pod("many-annotations", annotations));
    const seconds = (Date.now() - started) / 1000;
    assert.match(message, DENIED);
    // With managedFields, the review holds over 100,000 JSON values: refused before it is parsed,
    // still as an AdmissionReview answer with sm-injector's message.
    assert.match(message, /this pod is too large to examine: .*more than 100,000 JSON objects/);
    assert.ok(message.length < 4096, `the denial is ${message.length} characters`);
    assert.ok(seconds < 4, `answered after ${seconds} s`);
    const peak = webhookPeakRss();
    t.diagnostic(`answered in ${seconds} s; webhook peak RSS ${Math.round(peak / 2 ** 20)} MiB`);
    assert.ok(peak < CHART_MEMORY_LIMIT_BYTES, `webhook peak RSS ${peak} bytes`);
  });
});

describe("many annotations, below the body's JSON-value limit", () => {
  test("2,000 sm-injector annotations are refused naming the annotation-count limit", async () => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) annotations[`sm-injector.io/${i}`] = "x";
    const { message } = await refusal(pod("two-thousand", annotations));
    assert.match(message, DENIED);
    assert.match(message, /the pod has 2,000 sm-injector\.io\/ annotations; the limit is 512/);
  });
});

describe("pods that could never start are refused with sm-injector's message", () => {
  test("a container AWS_REGION that is not a region", async () => {
    const { message } = await refusal(
      pod("bad-region", NORMAL, {
        containers: [
          {
            name: "app",
            image: "registry.example.com/app:1",
            command: ["/app"],
            env: [{ name: "AWS_REGION", value: "Not A Region; $(id)" }],
          },
        ],
      }),
    );
    assert.match(message, DENIED);
    assert.match(
      message,
      /container app sets AWS_REGION to "Not A Region; \$\(id\)", which is not an AWS region/,
    );
  });

  test("an output-dir on the webhook's own token directory", async () => {
    const { message } = await refusal(
      pod("own-token-dir", {
        ...NORMAL,
        "sm-injector.io/output-dir": "/var/run/secrets/sm-injector/eks.amazonaws.com/serviceaccount",
      }),
    );
    assert.match(message, DENIED);
    assert.match(
      message,
      /sm-injector\.io\/output-dir: .* where sm-injector mounts the pod's identity token/,
    );
  });

  test("a volume named like sm-injector's own", async () => {
    const { message } = await refusal(
      pod("reserved-volume", NORMAL, { volumes: [{ name: "sm-injector-secrets", emptyDir: {} }] }),
    );
    assert.match(message, DENIED);
    assert.match(
      message,
      /the pod already has a volume named sm-injector-secrets, a name sm-injector reserves/,
    );
  });
});

describe("a namespace policy that pins the account", () => {
  const arn = (account: string) =>
    `arn:aws:secretsmanager:us-east-1:${account}:secret:erp/production/database-AbCdEf#DATABASE_URL`;

  test("an ARN in another account with an allowed-looking name is refused, without listing the policy", async () => {
    const { code, message } = await refusal(
      pod("other-account", { "sm-injector.io/env.DATABASE_URL": arn("999999999999") }),
      PINNED_NS,
    );
    assert.equal(code, 403);
    assert.match(message, DENIED);
    assert.match(
      message,
      /secret "arn:aws:secretsmanager:us-east-1:999999999999:secret:erp\/production\/database-AbCdEf" is not allowed in namespace pinned/,
    );
    assert.doesNotMatch(message, /123456789012/, "the denial quotes the namespace's policy");
  });

  test("the same ARN in the pinned account, and a name, are admitted", async () => {
    const created = await env().core.createNamespacedPod({
      namespace: PINNED_NS,
      body: pod("own-account", {
        "sm-injector.io/env.DATABASE_URL": arn("123456789012"),
        "sm-injector.io/env.JWT": "erp/production/jwt#key",
      }),
    });
    assert.ok(created.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER));
  });
});
