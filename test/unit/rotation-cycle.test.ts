// One rotation check (rotationCycle) end to end over fake dependencies: a small cluster of
// Deployments, their ReplicaSets and running pods, and a Secrets Manager whose current versions
// moved. The pure decisions have their own cases (rotation-plan.test.ts); these hold the cycle to
// them: what is restarted, how many per check, what is held and why, and what a dry run does.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import { pino } from "pino";
import { encodeVersions } from "../../src/contract/fetched-versions.ts";
import { type Review, type ReviewDeps, reviewCluster } from "../../src/report/review.ts";
import {
  type CheckShare,
  describedOnce,
  type RotationDeps,
  rotationCycle,
} from "../../src/rotation/controller.ts";
import { RESTARTED_FOR_ANNOTATION, type Workload } from "../../src/rotation/plan.ts";

const REGION = "eu-west-1";
const NS = "erp";

function template(app: string, secretId: string): V1PodTemplateSpec {
  return {
    metadata: {
      labels: { app, "sm-injector.io/inject": "true" },
      annotations: {
        "sm-injector.io/restart-on-rotation": "true",
        "sm-injector.io/region": REGION,
        "sm-injector.io/env.DB_PASSWORD": `${secretId}#password`,
      },
    },
    spec: { containers: [{ name: "app", image: "app:1", command: ["/app"] }] },
  };
}

/** A pod of `app`'s ReplicaSet, injected, whose init container fetched `versionId` of its secret. */
function runningPod(app: string, i: number, secretId: string, versionId: string): V1Pod {
  const spec = {
    version: 1,
    format: "shell",
    outputDir: "/run/sm-injector",
    fileName: "env",
    fileMode: 256,
    timeoutSeconds: 60,
    entries: [{ kind: "value", source: { secretId, region: REGION }, env: "DB_PASSWORD", key: "password" }],
  };
  return {
    metadata: {
      name: `${app}-h1-${i}`,
      namespace: NS,
      labels: { app, "sm-injector.io/inject": "true", "pod-template-hash": "h1" },
      annotations: { "sm-injector.io/status": "injected", "sm-injector.io/restart-on-rotation": "true" },
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: `${app}-h1`,
          uid: `uid-rs-${app}`,
          controller: true,
        },
      ],
    },
    spec: {
      containers: [{ name: "app" }],
      initContainers: [
        { name: "sm-injector-fetch", env: [{ name: "SM_INJECTOR_SPEC", value: JSON.stringify(spec) }] },
      ],
    },
    status: {
      initContainerStatuses: [
        {
          name: "sm-injector-fetch",
          image: "x",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: {
            terminated: {
              exitCode: 0,
              message: encodeVersions([{ secretId, region: REGION, stage: "AWSCURRENT", versionId }]),
            },
          },
        },
      ],
    },
  };
}

/**
 * `apps` Deployments, each reading its own secret; each app's pods run version v1, and Secrets
 * Manager's AWSCURRENT is `current(app)`. Records every stamp.
 */
function cluster(apps: string[], opts: { current?: (app: string) => string; stampFails?: string[] } = {}) {
  const secretOf = (app: string) => `erp/production/${app}`;
  const stamped: Array<{ workload: Workload; annotations: Record<string, string> }> = [];
  const pods = apps.flatMap((app) => [0, 1].map((i) => runningPod(app, i, secretOf(app), "v1")));
  const deps: RotationDeps = {
    log: pino({ level: "silent" }),
    now: () => Date.parse("2026-12-02T12:00:00Z"),
    async *podPages() {
      yield pods.slice(0, 3);
      yield pods.slice(3);
    },
    async replicaSet(_ns, name) {
      const app = name.replace(/-h1$/, "");
      if (!apps.includes(app)) return undefined;
      const t = template(app, secretOf(app));
      return {
        uid: `uid-rs-${app}`,
        controller: { apiVersion: "apps/v1", kind: "Deployment", name: app, uid: `uid-dep-${app}` },
        labels: { ...t.metadata?.labels, "pod-template-hash": "h1" },
        template: {
          ...t,
          metadata: { ...t.metadata, labels: { ...t.metadata?.labels, "pod-template-hash": "h1" } },
        },
      };
    },
    async controllerRevision() {
      return undefined;
    },
    async workload(kind, _ns, name) {
      if (kind !== "Deployment" || !apps.includes(name)) return undefined;
      return {
        uid: `uid-dep-${name}`,
        selector: { matchLabels: { app: name } },
        template: template(name, secretOf(name)),
      };
    },
    async stampTemplate(workload, annotations) {
      if (opts.stampFails?.includes(workload.name)) throw Object.assign(new Error("conflict"), { code: 409 });
      stamped.push({ workload, annotations });
    },
    async versionStages(region, secretId) {
      assert.equal(region, REGION);
      const app = secretId.replace("erp/production/", "");
      return { [opts.current?.(app) ?? "v2"]: ["AWSCURRENT"], v1: ["AWSPREVIOUS"] };
    },
  };
  return { deps, stamped };
}

const options = { minRestartIntervalMs: 600_000, dryRun: false, concurrency: 4 };

describe("one rotation check", () => {
  test("every workload whose pods run a superseded version is restarted, once, with a marker", async () => {
    const { deps, stamped } = cluster(["api", "worker"]);
    const r = await rotationCycle(deps, options);
    assert.equal(r.pods, 4);
    assert.equal(r.watchedPods, 4);
    assert.equal(r.unverifiedPods, 0);
    assert.equal(r.secrets, 2);
    assert.equal(r.stalePods, 4);
    assert.deepEqual(r.restarted.map((d) => d.workload.name).sort(), ["api", "worker"]);
    assert.deepEqual(stamped.map((s) => s.workload.name).sort(), ["api", "worker"]);
    for (const s of stamped) {
      assert.equal(s.workload.uid, `uid-dep-${s.workload.name}`, "the patch names the workload's uid");
      assert.ok(s.annotations[RESTARTED_FOR_ANNOTATION], "the restart says which versions it is for");
    }
  });

  test("nothing is restarted when the versions the pods run are still current", async () => {
    const { deps, stamped } = cluster(["api", "worker"], { current: () => "v1" });
    const r = await rotationCycle(deps, options);
    assert.equal(r.stalePods, 0);
    assert.deepEqual(r.restarted, []);
    assert.deepEqual(stamped, []);
  });

  test("at most maxRestartsPerCheck workloads are restarted; the others are held for the next check", async () => {
    const apps = ["a1", "a2", "a3", "a4", "a5"];
    const { deps, stamped } = cluster(apps);
    const r = await rotationCycle(deps, { ...options, maxRestartsPerCheck: 2 });
    assert.equal(r.restarted.length, 2);
    assert.equal(stamped.length, 2);
    const paced = r.held.filter((h) => /at most 2 restarts per check/.test(h.why));
    assert.equal(paced.length, 3, JSON.stringify(r.held));
  });

  test("a dry run stamps nothing but reports what it would restart", async () => {
    const { deps, stamped } = cluster(["api"]);
    const r = await rotationCycle(deps, { ...options, dryRun: true });
    assert.deepEqual(
      r.restarted.map((d) => d.workload.name),
      ["api"],
    );
    assert.deepEqual(stamped, []);
  });

  test("a failed stamp is counted, and the other workloads are still restarted", async () => {
    const { deps, stamped } = cluster(["api", "worker"], { stampFails: ["api"] });
    const r = await rotationCycle(deps, options);
    assert.equal(r.restartErrors, 1);
    assert.deepEqual(
      stamped.map((s) => s.workload.name),
      ["worker"],
    );
  });

  test("pods whose workload is gone are not trusted, and never restart anything", async () => {
    const { deps, stamped } = cluster(["api"]);
    const gone: RotationDeps = { ...deps, workload: async () => undefined };
    const r = await rotationCycle(gone, options);
    assert.equal(r.unverifiedPods, 2);
    assert.equal(r.watchedPods, 0);
    assert.deepEqual(stamped, []);
  });
});

describe("a check and the review after it (rotation --metrics-port): one pass over the pods", () => {
  const OPT_IN = "sm-injector.io/restart-on-rotation";
  /** Without the restart opt-in: the check does not watch it, the review still covers it. */
  const withoutOptIn = <T extends { metadata?: { annotations?: Record<string, string> } }>(o: T): T => {
    const copy = structuredClone(o);
    delete copy.metadata?.annotations?.[OPT_IN];
    return copy;
  };

  /**
   * cluster(apps)'s deps plus the review's reads (its Deployments listed), every API read counted;
   * `quiet` apps have not opted in to restarts; a `failOnce` read fails the first time it is made.
   */
  function counted(
    apps: string[],
    opts: { quiet?: string[]; failOnce?: Array<"podPages" | "replicaSet" | "describeSecret"> } = {},
  ) {
    const { deps } = cluster(apps);
    const reads = { podLists: 0, replicaSets: 0, workloads: 0, describes: 0 };
    const failing = new Set(opts.failOnce);
    const failNow = (read: "podPages" | "replicaSet" | "describeSecret") => failing.delete(read);
    const unavailable = () => Object.assign(new Error("the server went away"), { code: 503 });
    const quiet = (app: string) => opts.quiet?.includes(app) ?? false;
    const review: ReviewDeps = {
      ...deps,
      async *podPages() {
        reads.podLists++;
        const fail = failNow("podPages");
        let first = true;
        for await (const page of deps.podPages()) {
          if (!first && fail) throw unavailable();
          first = false;
          yield page.map((pod) => (quiet(pod.metadata?.labels?.app ?? "") ? withoutOptIn(pod) : pod));
        }
      },
      replicaSet: async (ns, name) => {
        reads.replicaSets++;
        if (failNow("replicaSet")) throw unavailable();
        const rs = await deps.replicaSet(ns, name);
        return rs?.template && quiet(name.replace(/-h1$/, ""))
          ? { ...rs, template: withoutOptIn(rs.template) }
          : rs;
      },
      workload: async (kind, ns, name) => {
        reads.workloads++;
        const w = await deps.workload(kind, ns, name);
        return w?.template && quiet(name) ? { ...w, template: withoutOptIn(w.template) } : w;
      },
      async *workloadPages() {
        yield apps.map((name) => {
          const t = template(name, `erp/production/${name}`);
          return {
            kind: "Deployment" as const,
            namespace: NS,
            name,
            uid: `uid-dep-${name}`,
            selector: { matchLabels: { app: name } },
            template: quiet(name) ? withoutOptIn(t) : t,
          };
        });
      },
      async describeSecret() {
        reads.describes++;
        if (failNow("describeSecret")) throw unavailable();
        return { versionStages: { v2: ["AWSCURRENT"], v1: ["AWSPREVIOUS"] }, rotationEnabled: false };
      },
      async namespaceAnnotations() {
        return {};
      },
      async warnWorkload() {},
    };
    return { review, reads };
  }
  const podsOf = (r: Review) => r.workloads.map((w) => [w.name, w.pods]);
  const apps = ["api", "batch", "worker"];

  test("the review reuses the check's pods, owner reads and DescribeSecret, and says what a review of its own says", async () => {
    const alone = counted(apps, { quiet: ["batch"] });
    const expected = await reviewCluster(alone.review, options);
    assert.deepEqual(alone.reads, { podLists: 1, replicaSets: 3, workloads: 0, describes: 3 });
    // The review covers the workload that did not opt in to restarts; the check does not watch it.
    assert.deepEqual(podsOf(expected), [
      ["api", 2],
      ["batch", 2],
      ["worker", 2],
    ]);

    const { review, reads } = counted(apps, { quiet: ["batch"] });
    const share: CheckShare = {};
    const once = describedOnce(review);
    const report = await rotationCycle(once, options, share);
    assert.equal(report.watchedPods, 4, "the check watches the opted-in workloads' pods only");
    assert.deepEqual(report.restarted.map((r) => r.workload.name).sort(), ["api", "worker"]);
    assert.deepEqual(reads, { podLists: 1, replicaSets: 2, workloads: 2, describes: 2 });
    const after = await reviewCluster(once, options, share);
    assert.deepEqual(
      reads,
      { podLists: 1, replicaSets: 3, workloads: 2, describes: 3 },
      "only what the check did not read: the quiet workload's ReplicaSet and secret",
    );
    assert.deepEqual(after, expected);
  });

  test("a check that did not read every page leaves the review to list the pods itself", async () => {
    const expected = await reviewCluster(counted(apps).review, options);
    const { review, reads } = counted(apps, { failOnce: ["podPages"] });
    const share: CheckShare = {};
    await assert.rejects(rotationCycle(review, { ...options, dryRun: true }, share), /went away/);
    assert.equal(share.reviewedPods, undefined);
    const after = await reviewCluster(review, options, share);
    assert.equal(reads.podLists, 2, "listed again");
    assert.deepEqual(after, expected);
  });

  test("a read that failed in the check is made again by the review, not inherited as an error", async () => {
    const expected = await reviewCluster(counted(apps).review, options);
    const { review, reads } = counted(apps, { failOnce: ["replicaSet", "describeSecret"] });
    const share: CheckShare = {};
    const once = describedOnce(review);
    const report = await rotationCycle(once, { ...options, dryRun: true }, share);
    assert.equal(report.unverifiedPods, 2, "the pods of the ReplicaSet that could not be read");
    assert.equal(report.describeErrors, 1);
    const after = await reviewCluster(once, options, share);
    assert.deepEqual(after, expected);
    assert.equal(reads.replicaSets, 4, "the failed ReplicaSet read once more");
    assert.equal(reads.describes, 4, "the failed DescribeSecret read once more");
  });
});
