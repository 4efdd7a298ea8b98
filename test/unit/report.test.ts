// The pure parts of the review: a namespace's maximum secret age, a secret's age, the report's
// tables, the metrics' bounded labels, and the verification of a CronJob's pods (through their Job).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import { encodeVersions } from "../../src/contract/fetched-versions.ts";
import { namespaceMaxSecretAge, parseMaxSecretAge, secretAgeSeconds } from "../../src/report/max-age.ts";
import { formatAge, renderReview, table } from "../../src/report/render.ts";
import { maxAgeWarnings, type Review, type SecretReview } from "../../src/report/review.ts";
import { createRotationMetrics, labelledSecrets } from "../../src/rotation/metrics.ts";
import {
  injectedPodView,
  type PodView,
  podView,
  REVIEWED_OWNERS,
  type RevisionFacts,
  templateFingerprint,
  templateReferences,
  templateRefs,
  verifyMembership,
  workloadFacts,
} from "../../src/rotation/plan.ts";
import { completedInitStatus, forgedFetchSpec } from "../helpers/forged.ts";

describe("sm-injector.io/max-secret-age", () => {
  test("a whole number and a unit", () => {
    assert.deepEqual(parseMaxSecretAge("90d"), { seconds: 90 * 86_400 });
    assert.deepEqual(parseMaxSecretAge("12w"), { seconds: 12 * 7 * 86_400 });
    assert.deepEqual(parseMaxSecretAge("36h"), { seconds: 36 * 3600 });
    assert.deepEqual(parseMaxSecretAge("45m"), { seconds: 2700 });
    assert.deepEqual(parseMaxSecretAge(" 3600s "), { seconds: 3600 });
  });

  test("anything else is refused with how to write it, quoting at most 40 characters", () => {
    for (const bad of ["90", "0d", "-1d", "1.5d", "90 days", "90D", "d", "", "99999999d", "1y"]) {
      const r = parseMaxSecretAge(bad);
      assert.ok("error" in r, bad);
      assert.match(r.error, /whole number and a unit \(s, m, h, d or w\).*"90d"/);
    }
    const long = parseMaxSecretAge(`9${"9".repeat(10_000)}d`);
    assert.ok("error" in long && long.error.length < 250);
  });

  test("a namespace without the annotation sets none", () => {
    assert.equal(namespaceMaxSecretAge({ "sm-injector.io/allowed-secrets": "erp/*" }), undefined);
    assert.deepEqual(namespaceMaxSecretAge({ "sm-injector.io/max-secret-age": "90d" }), {
      text: "90d",
      seconds: 7_776_000,
    });
    assert.ok("error" in (namespaceMaxSecretAge({ "sm-injector.io/max-secret-age": "soon" }) ?? {}));
  });
});

describe("secretAgeSeconds", () => {
  const now = Date.parse("2026-12-02T12:00:00Z");
  const day = (d: string) => new Date(`2026-${d}T12:00:00Z`);
  test("since the last rotation first, else the last change, else the creation", () => {
    const dates = { lastRotatedDate: day("09-03"), lastChangedDate: day("11-30"), createdDate: day("01-01") };
    assert.equal(secretAgeSeconds(dates, now), 90 * 86_400);
    assert.equal(
      secretAgeSeconds({ lastChangedDate: day("11-30"), createdDate: day("01-01") }, now),
      2 * 86_400,
    );
    assert.equal(secretAgeSeconds({ createdDate: day("12-01") }, now), 86_400);
    assert.equal(secretAgeSeconds({}, now), undefined);
    assert.equal(
      secretAgeSeconds({ lastChangedDate: day("12-03") }, now),
      0,
      "a clock ahead: never negative",
    );
  });
});

const secret = (over: Partial<SecretReview>): SecretReview => ({
  secretId: "erp/production/database",
  region: "eu-west-1",
  readers: ["Deployment/erp/erp-api"],
  supersededPods: 0,
  rotationEnabled: true,
  ageSeconds: 100,
  ...over,
});

const REVIEW: Review = {
  generatedAt: "2026-12-02T12:00:00.000Z",
  workloads: [
    {
      kind: "Deployment",
      namespace: "erp",
      name: "erp-api",
      pods: 3,
      maxSecretAge: { text: "30d", seconds: 30 * 86_400 },
      overMaxAge: ["erp/production/database (eu-west-1)"],
      references: [
        {
          secretId: "erp/production/database",
          region: "eu-west-1",
          stage: "AWSCURRENT",
          currentVersionId: "5e6f7a8b-0000",
          pods: [
            { pod: "a", versionId: "5e6f7a8b-0000", superseded: false },
            { pod: "b", versionId: "5e6f7a8b-0000", superseded: false },
            { pod: "c", versionId: "1a2b3c4d-0000", superseded: true },
          ],
          alsoReadBy: ["CronJob/erp/nightly"],
        },
        {
          secretId: "erp/staging/jwt/secret_key",
          region: "eu-west-1",
          pinnedVersionId: "9f8e7d6c-0000",
          pods: [],
          alsoReadBy: [],
        },
      ],
    },
    {
      kind: "CronJob",
      namespace: "erp",
      name: "broken",
      pods: 0,
      references: [],
      overMaxAge: [],
      error: "its pod template's sm-injector annotations do not compile",
    },
  ],
  secrets: [
    secret({
      ageSeconds: 40 * 86_400,
      maxAgeSeconds: 30 * 86_400,
      supersededPods: 1,
      lastRotatedDate: "2026-10-23T12:00:00.000Z",
    }),
    secret({ secretId: "erp/staging/jwt/secret_key", error: "AccessDeniedException" }),
  ],
  unverifiedPods: [
    { namespace: "erp", pod: "forged", why: "its owner reference does not name ReplicaSet x" },
  ],
};

describe("the report's output", () => {
  test("table: columns padded to the widest cell, the last one not", () => {
    assert.equal(
      table(
        ["A", "BB"],
        [
          ["xxx", "y"],
          ["z", ""],
        ],
      ),
      "A    BB\nxxx  y\nz",
    );
  });

  test("formatAge: the largest unit that fits", () => {
    assert.deepEqual([40, 120, 7200, 90 * 86_400, undefined].map(formatAge), ["40s", "2m", "2h", "90d", "-"]);
  });

  test("tables: pods grouped by version, pinned references, errors, the workloads over their maximum age", () => {
    const text = renderReview(REVIEW, "table");
    assert.match(
      text,
      /^Deployment erp\/erp-api +erp\/production\/database +eu-west-1 +AWSCURRENT +5e6f7a8b +2 current, 1 1a2b3c4d superseded +CronJob\/erp\/nightly$/m,
    );
    assert.match(
      text,
      /^Deployment erp\/erp-api +erp\/staging\/jwt\/secret_key +eu-west-1 +version 9f8e7d6c +pinned +no running pods +-$/m,
    );
    assert.match(
      text,
      /^CronJob erp\/broken +\(its pod template's sm-injector annotations do not compile\)$/m,
    );
    assert.match(
      text,
      /^erp\/production\/database +eu-west-1 +on +2026-10-23 12:00 +- +- +40d \/ max 30d OVER +1 +Deployment\/erp\/erp-api$/m,
    );
    assert.match(
      text,
      /^erp\/staging\/jwt\/secret_key +eu-west-1 +DescribeSecret failed: AccessDeniedException/m,
    );
    assert.match(text, /^ {2}Deployment erp\/erp-api \(max 30d\): erp\/production\/database \(eu-west-1\)$/m);
    assert.match(text, /^ {2}erp\/forged: its owner reference does not name ReplicaSet x$/m);
  });

  test("what a tenant wrote reaches a terminal without escape sequences, bidi overrides or unbounded length", () => {
    const why = `owned by \u001b[2J\u001b]0;pwned\u0007Evil\u202e/x (v1), which this controller does not roll${"x".repeat(5000)}`;
    const text = renderReview({ ...REVIEW, unverifiedPods: [{ namespace: "erp", pod: "p", why }] }, "table");
    const controls = [...text].filter((c) => c !== "\n" && /[\p{Cc}\p{Cf}]/u.test(c));
    assert.deepEqual(controls, []);
    assert.match(text, /erp\/p: owned by \?\[2J\?\]0;pwned\?Evil\?\/x/);
    assert.ok(text.split("\n").every((l) => l.length < 400));
    const json = renderReview({ ...REVIEW, unverifiedPods: [{ namespace: "erp", pod: "p", why }] }, "json");
    assert.equal(json.includes("\u001b"), false, "JSON escapes it");
  });

  test("json: the review itself", () => {
    assert.deepEqual(JSON.parse(renderReview(REVIEW, "json")), REVIEW);
  });
});

describe("max-secret-age warnings (the controller's Events)", () => {
  test("one per workload over its namespace's maximum, naming each secret and its age", () => {
    const warnings = maxAgeWarnings(REVIEW);
    assert.equal(warnings.length, 1);
    assert.deepEqual(warnings[0]?.workload, { kind: "Deployment", namespace: "erp", name: "erp-api" });
    assert.equal(
      warnings[0]?.message,
      "reads secrets older than its namespace's sm-injector.io/max-secret-age (30d): erp/production/database (eu-west-1) 40d old; rotate them (or enable Secrets Manager rotation), then restart the workload",
    );
  });

  test("the Event's identity is what it is about, not the ages that grow; at most 10 secrets named", () => {
    const older = {
      ...REVIEW,
      secrets: REVIEW.secrets.map((s) => ({ ...s, ageSeconds: (s.ageSeconds ?? 0) + 86_400 })),
    };
    assert.notEqual(maxAgeWarnings(older)[0]?.message, maxAgeWarnings(REVIEW)[0]?.message);
    assert.equal(maxAgeWarnings(older)[0]?.key, maxAgeWarnings(REVIEW)[0]?.key);
    const many = Array.from({ length: 25 }, (_, i) => `erp/s${i} (eu-west-1)`);
    const w = REVIEW.workloads[0] as Review["workloads"][number];
    const big = maxAgeWarnings({ ...REVIEW, workloads: [{ ...w, overMaxAge: many }] });
    assert.match(big[0]?.message ?? "", /erp\/s9 \(eu-west-1\) - old and 15 more;/);
    assert.ok((big[0]?.message.length ?? 0) < 1024);
  });
});

describe("metrics: bounded labels", () => {
  const many = Array.from({ length: 30 }, (_, i) =>
    secret({ secretId: `erp/s${String(i).padStart(2, "0")}`, ageSeconds: i * 10 }),
  );

  test("the oldest secrets get series, up to the cap; failed ones none", () => {
    const chosen = labelledSecrets(
      [...many, secret({ secretId: "erp/failed", error: "x", ageSeconds: 1e9 })],
      3,
    );
    assert.deepEqual(
      chosen.map((s) => s.secretId),
      ["erp/s29", "erp/s28", "erp/s27"],
    );
  });

  test("one series per secret and gauge, at most the cap; the rest counted", async () => {
    const metrics = createRotationMetrics(10);
    metrics.update({ ...REVIEW, secrets: many });
    const text = await metrics.registry.metrics();
    assert.equal(text.match(/^sm_injector_secret_age_seconds\{/gm)?.length, 10);
    assert.equal(text.match(/^sm_injector_secret_rotation_enabled\{/gm)?.length, 10);
    assert.match(text, /^sm_injector_secrets_unlabelled 20$/m);
    assert.match(text, /^sm_injector_secret_age_seconds\{region="eu-west-1",secret="erp\/s29"\} 290$/m);
    // A later review without them: their series are gone, not left at old values.
    metrics.update({ ...REVIEW, secrets: [secret({})] });
    const after = await metrics.registry.metrics();
    assert.equal(after.match(/^sm_injector_secret_age_seconds\{/gm)?.length, 1);
    assert.match(after, /^sm_injector_secrets_unlabelled 0$/m);
    assert.match(after, /^sm_injector_workloads_over_max_secret_age 1$/m);
  });
});

describe("a CronJob's pods: verified through their Job", () => {
  const template: V1PodTemplateSpec = {
    metadata: {
      labels: { app: "nightly", "sm-injector.io/inject": "true" },
      annotations: {
        "sm-injector.io/env.JWT": "erp/staging/jwt/secret_key",
        "sm-injector.io/env.OLD": "erp/staging/jwt/secret_key?versionId=a1b2c3d4-0000-4000-8000-000000000001",
      },
    },
    spec: { restartPolicy: "Never", containers: [{ name: "job", image: "erp/job:1" }] },
  };
  // What the API server adds to a Job's template: its controller-uid and job-name labels.
  const jobLabels = {
    "batch.kubernetes.io/controller-uid": "job-uid",
    "controller-uid": "job-uid",
    "batch.kubernetes.io/job-name": "nightly-1",
    "job-name": "nightly-1",
  };
  const jobTemplate = {
    ...template,
    metadata: { ...template.metadata, labels: { ...template.metadata?.labels, ...jobLabels } },
  };
  const cronJob = workloadFacts(
    { kind: "CronJob", namespace: "erp", name: "nightly", uid: "cj-uid" },
    undefined,
    template,
    "eu-west-1",
  );
  const job = (over: Partial<RevisionFacts> = {}): RevisionFacts => ({
    kind: "Job",
    name: "nightly-1",
    uid: "job-uid",
    controller: { apiVersion: "batch/v1", kind: "CronJob", name: "nightly", uid: "cj-uid" },
    hash: undefined,
    fingerprint: templateFingerprint(jobTemplate),
    selector: { matchLabels: { "batch.kubernetes.io/controller-uid": "job-uid" } },
    ...over,
  });
  const jobPod = (
    owner = { apiVersion: "batch/v1", kind: "Job", name: "nightly-1", uid: "job-uid" },
    fetchSpec = forgedFetchSpec(["erp/staging/jwt/secret_key"], "eu-west-1"),
  ): V1Pod => ({
    metadata: {
      name: "nightly-1-x7k2p",
      namespace: "erp",
      labels: { ...template.metadata?.labels, ...jobLabels },
      annotations: { "sm-injector.io/status": "injected" },
      ownerReferences: [{ ...owner, controller: true }],
    },
    spec: {
      containers: [{ name: "job" }],
      initContainers: [
        {
          name: "sm-injector-fetch",
          env: [{ name: "SM_INJECTOR_SPEC", value: fetchSpec }],
        },
      ],
    },
    status: {
      initContainerStatuses: [
        completedInitStatus(
          "sm-injector-fetch",
          encodeVersions([
            {
              secretId: "erp/staging/jwt/secret_key",
              region: "eu-west-1",
              stage: "AWSCURRENT",
              versionId: "v1",
            },
          ]),
        ),
      ],
    },
  });

  test("a review reads a Job's pod; the rotation controller (which restarts nothing it cannot roll) does not", () => {
    assert.equal((injectedPodView(jobPod(), REVIEWED_OWNERS) as PodView).owner?.kind, "Job");
    assert.match((podView(jobPod()) as { skip: string }).skip, /not opted in/);
    const optedIn = jobPod();
    (optedIn.metadata?.annotations as Record<string, string>)["sm-injector.io/restart-on-rotation"] = "true";
    assert.match(
      (podView(optedIn) as { skip: string }).skip,
      /owned by Job\/nightly-1 \(batch\/v1\), which no rollout restarts/,
    );
  });

  test("a pod of pinned versions only: a running pod of its workload for a review, nothing to watch for restarts", () => {
    const spec = JSON.parse(forgedFetchSpec(["erp/staging/jwt/secret_key"], "eu-west-1"));
    spec.entries[0].source.versionId = "a1b2c3d4-0000-4000-8000-000000000001";
    const pinned = jobPod(undefined, JSON.stringify(spec));
    assert.deepEqual((injectedPodView(pinned, REVIEWED_OWNERS) as PodView).refs, []);
    const rollable = injectedPodView(
      jobPod({ apiVersion: "apps/v1", kind: "ReplicaSet", name: "x", uid: "u" }, JSON.stringify(spec)),
      REVIEWED_OWNERS,
    );
    assert.deepEqual((rollable as PodView).refs, []);
    const optedIn = jobPod(
      { apiVersion: "apps/v1", kind: "ReplicaSet", name: "x", uid: "u" },
      JSON.stringify(spec),
    );
    (optedIn.metadata?.annotations as Record<string, string>)["sm-injector.io/restart-on-rotation"] = "true";
    assert.deepEqual(podView(optedIn), {
      namespace: "erp",
      name: "nightly-1-x7k2p",
      skip: "only pinned versions",
    });
  });

  test("the Job's template (less the Job controller's labels) is the CronJob's: current", () => {
    const view = injectedPodView(jobPod(), REVIEWED_OWNERS) as PodView;
    assert.deepEqual(verifyMembership(view, cronJob, job()), { ok: true, revision: "current" });
  });

  test("a Job another CronJob controls, a pod outside the Job's selector, an edited template: not members", () => {
    const view = injectedPodView(jobPod(), REVIEWED_OWNERS) as PodView;
    const other = { apiVersion: "batch/v1", kind: "CronJob", name: "nightly", uid: "another-uid" };
    assert.match(
      String((verifyMembership(view, cronJob, job({ controller: other })) as { why: string }).why),
      /not controlled by CronJob nightly/,
    );
    const selector = { matchLabels: { "batch.kubernetes.io/controller-uid": "another-job" } };
    assert.match(
      String((verifyMembership(view, cronJob, job({ selector })) as { why: string }).why),
      /do not match Job nightly-1's selector/,
    );
    const edited = templateFingerprint({
      ...jobTemplate,
      spec: { containers: [{ name: "job", image: "evil" }] },
    });
    assert.match(
      String((verifyMembership(view, cronJob, job({ fingerprint: edited })) as { why: string }).why),
      /holds neither/,
    );
    const forgedOwner = injectedPodView(
      jobPod({ apiVersion: "batch/v1", kind: "Job", name: "nightly-1", uid: "forged" }),
      REVIEWED_OWNERS,
    ) as PodView;
    assert.match(
      String((verifyMembership(forgedOwner, cronJob, job()) as { why: string }).why),
      /does not name Job nightly-1/,
    );
  });

  test("a review sees pinned references too; the controller watches stages only", () => {
    const all = templateReferences(template, "eu-west-1");
    assert.ok(Array.isArray(all));
    assert.deepEqual(
      all.map((r) => r.versionId ?? r.stage),
      ["AWSCURRENT", "a1b2c3d4-0000-4000-8000-000000000001"],
    );
    assert.deepEqual(templateRefs(template, "eu-west-1"), [
      { secretId: "erp/staging/jwt/secret_key", region: "eu-west-1", stage: "AWSCURRENT", optional: false },
    ]);
  });
});
