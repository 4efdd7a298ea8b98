// A pod's claim of being injected (its own sm-injector-fetch init container, SM_INJECTOR_SPEC and
// status annotation) is never trusted: it is decided on its annotations, with the policy and the
// validation every pod gets, and its additions are derived afresh. Uses only reviewPod, so it runs
// unchanged against older code.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { type AdmissionRequest, reviewPod } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { parseSecretPolicy } from "../../src/contract/policy.ts";
import { forgedFetchSpec } from "../helpers/forged.ts";
import { applyPatch } from "../helpers/json-patch.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const ROLE = "arn:aws:iam::123456789012:role/app";

// --- the decision on pods that claim to be injected -----------------------------------------------------

/** A pod that carries a hand-made sm-injector-fetch container and SM_INJECTOR_SPEC, claiming to be injected. */
function forgedPod(annotations: Record<string, string>, namespace = "team-a"): V1Pod {
  const forgedSpec = forgedFetchSpec(["other-team/production/database"], "eu-west-1", () => "DB");
  return {
    metadata: {
      name: "forged",
      namespace,
      labels: { "sm-injector.io/inject": "true" },
      annotations: { ...annotations, "sm-injector.io/status": "injected" },
    },
    spec: {
      serviceAccountName: "api",
      initContainers: [
        {
          name: "sm-injector-fetch",
          image: "img:1",
          args: ["fetch"],
          env: [
            { name: "SM_INJECTOR_SPEC", value: forgedSpec },
            { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/other-team" },
          ],
          volumeMounts: [{ name: "sm-injector-secrets", mountPath: "/run/sm-injector" }],
        },
      ],
      containers: [
        {
          name: "app",
          image: "app:1",
          volumeMounts: [{ name: "sm-injector-secrets", mountPath: "/run/sm-injector", readOnly: true }],
        },
      ],
      volumes: [{ name: "sm-injector-secrets", emptyDir: { medium: "Memory" } }],
    },
  };
}

const request = (pod: V1Pod): AdmissionRequest => ({
  uid: "forged-uid",
  kind: { group: "", version: "v1", kind: "Pod" },
  operation: "CREATE",
  namespace: pod.metadata?.namespace ?? "default",
  object: pod as unknown as Record<string, unknown>,
});
const deps = {
  config,
  lookupServiceAccount: async () => ({ roleArn: ROLE }),
  lookupNamespacePolicy: async () => parseSecretPolicy("team-a/*"),
};
const patched = (pod: V1Pod, patch: string | undefined): V1Pod =>
  applyPatch(pod, JSON.parse(Buffer.from(patch ?? "", "base64").toString()));
const initOf = (pod: V1Pod) => (pod.spec?.initContainers ?? []).filter((c) => c.name === "sm-injector-fetch");
const specOf = (c: V1Container | undefined) =>
  JSON.parse(c?.env?.find((e) => e.name === "SM_INJECTOR_SPEC")?.value ?? "{}") as {
    entries: Array<{ source: { secretId: string } }>;
  };

describe("a pod that claims to be injected is decided on its annotations", () => {
  test("asking for a secret outside the namespace's allowed-secrets: refused by policy, the audit names the secret", async () => {
    const out = await reviewPod(
      request(forgedPod({ "sm-injector.io/env.DB": "other-team/production/database" })),
      deps,
    );
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.uid, "forged-uid");
    assert.equal(out.response.status?.code, 403);
    assert.equal(out.reason, "secret policy");
    assert.match(
      out.response.status?.message ?? "",
      /secret "other-team\/production\/database" is not allowed in namespace team-a/,
    );
    assert.deepEqual(out.secretIds, ["other-team/production/database"]);
  });

  test("with a typo in an annotation key: refused as any pod is", async () => {
    const out = await reviewPod(
      request(forgedPod({ "sm-injector.io/env.DB": "team-a/db", "sm-injector.io/formt": "dotenv" })),
      deps,
    );
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status?.code, 400);
    assert.match(
      out.response.status?.message ?? "",
      /sm-injector\.io\/formt: unknown sm-injector annotation\. Did you mean sm-injector\.io\/format\?/,
    );
  });

  test("within policy: sm-injector's own init container and spec replace the forged ones", async () => {
    const pod = forgedPod({ "sm-injector.io/env.DB": "team-a/db#password" });
    const out = await reviewPod(request(pod), deps);
    assert.equal(out.response.allowed, true, out.response.status?.message);
    assert.equal(out.result, "injected");
    assert.equal(out.reason, "re-derived");
    assert.deepEqual(out.secretIds, ["team-a/db"]);
    const after = patched(pod, out.response.patch);
    const inits = initOf(after);
    assert.equal(inits.length, 1);
    assert.deepEqual(
      specOf(inits[0]).entries.map((e) => e.source.secretId),
      ["team-a/db"],
      "the forged SM_INJECTOR_SPEC is gone",
    );
    assert.equal(
      inits[0]?.env?.find((e) => e.name === "AWS_ROLE_ARN")?.value,
      ROLE,
      "the ServiceAccount's role, not the forged one",
    );
    assert.equal(after.spec?.volumes?.filter((v) => v.name === "sm-injector-secrets").length, 1);
    assert.equal(
      after.spec?.containers[0]?.volumeMounts?.filter((m) => m.name === "sm-injector-secrets").length,
      1,
    );
    // The API server sends the patched pod back on reinvocation: nothing changes then.
    const again = await reviewPod(request(after), deps);
    assert.equal(again.result, "unchanged");
    assert.deepEqual(again.secretIds, ["team-a/db"]);
  });
});
