// A tenant who may only create pods writes one that claims to be injected already (its own
// sm-injector-fetch init container, SM_INJECTOR_SPEC and status annotation), through the real
// kube-apiserver with the chart's webhook configuration. The claim buys nothing: the pod is decided
// on its annotations, against its Namespace's policy, and stored with sm-injector's own init
// container. A pod whose spec Linux could never exec is refused at admission (issue 11, cases 2, 9).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { forgedFetchSpec } from "../helpers/forged.ts";
import { apiError, INIT_CONTAINER, INIT_IMAGE, INJECT_LABEL, useE2E, WEBHOOK_NAME } from "./harness/env.ts";

const NS = "team-a";
const ROLE_ARN = "arn:aws:iam::123456789012:role/team-a-app";
const FORGED_ROLE = "arn:aws:iam::123456789012:role/other-team";
const OTHER_TEAMS_SECRET = "other-team/production/database";

const env = useE2E(
  { before, after },
  {
    setup: (e) =>
      e.createNamespace(NS, {
        annotations: { "sm-injector.io/allowed-secrets": "team-a/*" },
        serviceAccounts: { app: { "eks.amazonaws.com/role-arn": ROLE_ARN } },
      }),
  },
);

const DENIED = new RegExp(
  `^admission webhook "${WEBHOOK_NAME.replace(/\./g, "\\.")}" denied the request: sm-injector: `,
);

/** What a hostile tenant writes: sm-injector's init container, by hand, fetching another team's secret. */
function forgedPod(name: string, annotations: Record<string, string>): V1Pod {
  const forgedSpec = forgedFetchSpec([OTHER_TEAMS_SECRET], "us-east-1", () => "DB");
  return {
    metadata: {
      name,
      labels: { [INJECT_LABEL]: "true" },
      annotations: { ...annotations, "sm-injector.io/status": "injected" },
    },
    spec: {
      serviceAccountName: "app",
      securityContext: { runAsUser: 1000, runAsGroup: 1000 },
      initContainers: [
        {
          name: INIT_CONTAINER,
          image: "registry.example.com/attacker/fetch:1",
          args: ["fetch"],
          env: [
            { name: "SM_INJECTOR_SPEC", value: forgedSpec },
            { name: "AWS_ROLE_ARN", value: FORGED_ROLE },
          ],
          volumeMounts: [{ name: "sm-injector-secrets", mountPath: "/run/sm-injector" }],
        },
      ],
      containers: [
        {
          name: "app",
          image: "busybox",
          command: ["sleep", "3600"],
          volumeMounts: [{ name: "sm-injector-secrets", mountPath: "/run/sm-injector", readOnly: true }],
        },
      ],
      volumes: [{ name: "sm-injector-secrets", emptyDir: { medium: "Memory" } }],
    },
  };
}

/** The webhook's audit lines for a pod (they reach the log through a pipe: wait a little for them). */
async function auditOf(pod: string): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const lines = env()
      .webhookLogEntries()
      .filter((l) => l.msg === "admission" && l.pod === pod);
    if (lines.length > 0 || Date.now() > deadline) return lines;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function refusal(body: V1Pod): Promise<{ code: number | undefined; message: string }> {
  let refused: { code: number | undefined; message: string } | undefined;
  await assert.rejects(env().core.createNamespacedPod({ namespace: NS, body }), (e: unknown) => {
    refused = apiError(e);
    return true;
  });
  await assert.rejects(
    env().core.readNamespacedPod({ namespace: NS, name: body.metadata?.name as string }),
    /404|not found/i,
    "the pod was not stored",
  );
  return refused as { code: number | undefined; message: string };
}

const initsOf = (pod: V1Pod) => pod.spec?.initContainers?.filter((c) => c.name === INIT_CONTAINER) ?? [];
const envOf = (c: V1Container | undefined, name: string) => c?.env?.find((e) => e.name === name)?.value;

describe("a pod that claims to be injected already", () => {
  test("asking for a secret outside its Namespace's allowed-secrets: refused by the policy", async () => {
    const { code, message } = await refusal(
      forgedPod("forged-policy", { "sm-injector.io/env.DB": OTHER_TEAMS_SECRET }),
    );
    assert.equal(code, 403);
    assert.match(message, DENIED);
    assert.match(message, /secret "other-team\/production\/database" is not allowed in namespace team-a/);
    const audit = await auditOf("forged-policy");
    assert.equal(audit.at(-1)?.result, "denied");
    assert.deepEqual(
      audit.at(-1)?.secretIds,
      [OTHER_TEAMS_SECRET],
      "the audit line names what was asked for",
    );
  });

  test("with a typo in an annotation key: refused, naming it", async () => {
    const { code, message } = await refusal(
      forgedPod("forged-typo", {
        "sm-injector.io/env.DB": "team-a/database",
        "sm-injector.io/formt": "dotenv",
      }),
    );
    assert.equal(code, 400);
    assert.match(message, DENIED);
    assert.match(
      message,
      /sm-injector\.io\/formt: unknown sm-injector annotation\. Did you mean sm-injector\.io\/format\?/,
    );
  });

  test("within policy: stored with sm-injector's own init container and spec, the audit naming the real secrets", async () => {
    const { core } = env();
    await core.createNamespacedPod({
      namespace: NS,
      body: forgedPod("forged-within", { "sm-injector.io/env.DB": "team-a/database#password" }),
    });
    const pod = await core.readNamespacedPod({ namespace: NS, name: "forged-within" });
    const inits = initsOf(pod);
    assert.equal(inits.length, 1, "exactly one sm-injector-fetch");
    const init = inits[0];
    assert.equal(init?.image, INIT_IMAGE, "the webhook's image, not the forged one");
    const spec = JSON.parse(envOf(init, "SM_INJECTOR_SPEC") ?? "{}") as {
      entries: Array<{ source: { secretId: string }; env: string; key?: string }>;
    };
    assert.deepEqual(
      spec.entries.map((e) => [e.source.secretId, e.env, e.key]),
      [["team-a/database", "DB", "password"]],
      "the forged SM_INJECTOR_SPEC is gone",
    );
    assert.equal(envOf(init, "AWS_ROLE_ARN"), ROLE_ARN, "the ServiceAccount's role, not the forged one");
    assert.equal(pod.spec?.volumes?.filter((v) => v.name === "sm-injector-secrets").length, 1);
    const secrets = pod.spec?.volumes?.find((v) => v.name === "sm-injector-secrets");
    assert.equal(secrets?.emptyDir?.sizeLimit, "1Mi", "sm-injector's own volume");
    assert.equal(
      pod.spec?.containers[0]?.volumeMounts?.filter((m) => m.name === "sm-injector-secrets").length,
      1,
    );

    const audit = await auditOf("forged-within");
    assert.equal(audit[0]?.result, "injected");
    assert.equal(audit[0]?.reason, "re-derived");
    for (const line of audit) assert.deepEqual(line.secretIds, ["team-a/database"]);
    assert.ok(
      audit.slice(1).every((l) => l.result === "unchanged"),
      "the reinvocation (after the ServiceAccount plugin) changes nothing",
    );
  });
});

test("a 200 KB #key (SM_INJECTOR_SPEC over Linux's 128 KiB per-variable limit) is refused with sm-injector's message", async () => {
  const body: V1Pod = {
    metadata: {
      name: "huge-key",
      labels: { [INJECT_LABEL]: "true" },
      annotations: { "sm-injector.io/env.DB": `team-a/database#${"k".repeat(200_000)}` },
    },
    spec: {
      serviceAccountName: "app",
      containers: [{ name: "app", image: "busybox", command: ["sleep", "1"] }],
    },
  };
  const { code, message } = await refusal(body);
  assert.equal(code, 400);
  assert.match(message, DENIED);
  assert.match(message, /SM_INJECTOR_SPEC|limit/);
  assert.ok(Buffer.byteLength(message) < 8192, `a bounded message (${Buffer.byteLength(message)} bytes)`);
});
