// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// The rotation controller watches a template's secrets like any other reference: a new AWSCURRENT
// of the RDS secret a DATABASE_URL template reads makes the Deployment's restart decision.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { encodeVersions, versionKey } from "../../src/contract/fetched-versions.ts";
import { injectManifests } from "../../src/inject/manifests.ts";
import {
  changesFor,
  decideRestarts,
  type PodView,
  podView,
  type RestartCandidate,
  restartCandidate,
  templateRefs,
  type WatchedRef,
  type Workload,
  workloadFacts,
} from "../../src/rotation/plan.ts";
import { fetchFinished } from "../helpers/pod-status.ts";

const RDS = "erp/production/rds";
const REF = { secretId: RDS, region: "eu-west-1", stage: "AWSCURRENT" };

/** A Deployment's template that reads the RDS secret only through a template (and a pinned JWT). */
const template: V1PodTemplateSpec = {
  metadata: {
    labels: { app: "erp-api", "sm-injector.io/inject": "true" },
    annotations: {
      "sm-injector.io/template.DATABASE_URL": `postgresql://\${${RDS}#username|urlencode}:\${${RDS}#password|urlencode}@\${${RDS}#host}:\${${RDS}#port}/\${${RDS}#dbname|urlencode}`,
      "sm-injector.io/env.JWT": "erp/staging/jwt?versionId=a1b2c3d4-0000-4000-8000-000000000001",
      "sm-injector.io/restart-on-rotation": "true",
    },
  },
  spec: {
    containers: [{ name: "api", image: "erp/api:2", env: [{ name: "AWS_REGION", value: "eu-west-1" }] }],
  },
};

/** The pod the webhook makes of the template (through `inject`, the same decision), after its init container recorded v1. */
async function injectedPod(): Promise<V1Pod> {
  const manifest = JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "erp-api-5d8f7c-abcde", namespace: "erp", ...template.metadata },
    spec: template.spec,
  });
  const r = await injectManifests(
    manifest,
    InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" }),
  );
  assert.ok(r.ok, r.errors.join("\n"));
  const pod = JSON.parse(JSON.stringify((await import("yaml")).parse(r.output))) as V1Pod;
  pod.metadata = {
    ...pod.metadata,
    ownerReferences: [
      { apiVersion: "apps/v1", kind: "ReplicaSet", name: "erp-api-5d8f7c", uid: "rs-uid", controller: true },
    ],
  };
  pod.status = {
    initContainerStatuses: [fetchFinished(encodeVersions([{ ...REF, versionId: "v1" }]))],
  };
  return pod;
}

test("a template's secret is watched, and its new version makes the restart decision", async () => {
  const DEPLOYMENT: Workload = { kind: "Deployment", namespace: "erp", name: "erp-api", uid: "d-uid" };
  const facts = workloadFacts(DEPLOYMENT, { matchLabels: { app: "erp-api" } }, template, "eu-west-1");
  assert.deepEqual(
    facts.refs,
    [{ ...REF, optional: false }],
    "the template's secret, once; the pinned id is not watched",
  );
  assert.deepEqual(templateRefs(template, "eu-west-1"), facts.refs);

  const view = podView(await injectedPod());
  assert.ok(!("skip" in view), "skip" in view ? view.skip : "");
  assert.deepEqual((view as PodView).refs, [{ ...REF, optional: false }], "the pod's own spec names it too");

  const refs = facts.refs as WatchedRef[];
  const unchanged = new Map([[versionKey(REF), "v1"]]);
  assert.deepEqual(changesFor(view as PodView, refs, unchanged), []);

  const rotated = new Map([[versionKey(REF), "v2"]]);
  const changes = changesFor(view as PodView, refs, rotated);
  assert.deepEqual(changes, [{ ...REF, from: "v1", to: "v2" }]);
  const candidate = restartCandidate(
    facts,
    [{ pod: "erp-api-5d8f7c-abcde", changes }],
    rotated,
  ) as RestartCandidate;
  const decision = decideRestarts([candidate], { now: Date.now(), minIntervalMs: 600_000 });
  assert.equal(decision.restart.length, 1);
  assert.deepEqual(decision.restart[0]?.workload, DEPLOYMENT);
  assert.deepEqual(decision.restart[0]?.changes, [{ ...REF, from: "v1", to: "v2" }]);
});
