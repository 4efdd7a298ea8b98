// What the rotation controller exports to Prometheus: the review of the cluster's secrets
// (src/report/review.ts) as gauges, refreshed after each check. Defined in one place and named
// after what they measure.
//
// Labels are bounded: one series per (region, secret) per gauge, for at most `maxSecrets` secrets
// (the oldest first: they are the ones an alert is about); the rest are counted in
// sm_injector_secrets_unlabelled. Secret names come from pod templates, so the cap is what stops a
// tenant from adding series by referencing many secrets. No namespace or pod label: those grow with
// the cluster; `sm-injector report` lists them.
import http from "node:http";
import { Gauge, Registry } from "prom-client";
import type { Review, SecretReview } from "../report/review.ts";

export const DEFAULT_METRICS_MAX_SECRETS = 500;

export interface RotationMetrics {
  registry: Registry;
  /** Sets every gauge from a review (replacing the last one's series). */
  update(review: Review): void;
}

const LABELS = ["region", "secret"] as const;

/** The secrets that get series: the oldest first (unknown ages last), then by name. */
export function labelledSecrets(secrets: readonly SecretReview[], max: number): SecretReview[] {
  return [...secrets]
    .filter((s) => s.error === undefined)
    .sort(
      (a, b) =>
        (b.ageSeconds ?? -1) - (a.ageSeconds ?? -1) ||
        a.secretId.localeCompare(b.secretId) ||
        a.region.localeCompare(b.region),
    )
    .slice(0, max);
}

export function createRotationMetrics(maxSecrets = DEFAULT_METRICS_MAX_SECRETS): RotationMetrics {
  const registry = new Registry();
  const gauge = (name: string, help: string) =>
    new Gauge({ name, help, labelNames: [...LABELS], registers: [registry] });
  const age = gauge(
    "sm_injector_secret_age_seconds",
    "Seconds since the secret was last rotated (LastRotatedDate), else last changed (LastChangedDate), else created",
  );
  const rotation = gauge(
    "sm_injector_secret_rotation_enabled",
    "1 when Secrets Manager rotation is enabled for the secret (RotationEnabled), else 0",
  );
  const superseded = gauge(
    "sm_injector_secret_superseded_pods",
    "Running pods (verified against their workload) that started with a version of the secret its stage no longer points at",
  );
  const maxAge = gauge(
    "sm_injector_secret_max_age_seconds",
    "The smallest sm-injector.io/max-secret-age of the namespaces whose workloads read the secret (absent: none set)",
  );
  const plain = (name: string, help: string) => new Gauge({ name, help, registers: [registry] });
  const unlabelled = plain(
    "sm_injector_secrets_unlabelled",
    `Secrets referenced beyond the ${maxSecrets} that get series (the oldest get them)`,
  );
  const describeErrors = plain(
    "sm_injector_secret_describe_errors",
    "Secrets whose DescribeSecret failed in the last review (they get no series)",
  );
  const overMaxAge = plain(
    "sm_injector_workloads_over_max_secret_age",
    "Workloads that read a secret older than their namespace's sm-injector.io/max-secret-age",
  );
  const unverified = plain(
    "sm_injector_unverified_pods",
    "Pods that claim to be injected but could not be verified against a workload",
  );
  const reviewed = plain(
    "sm_injector_review_timestamp_seconds",
    "When the last review of the cluster's secrets finished (Unix time)",
  );
  return {
    registry,
    update(review) {
      for (const g of [age, rotation, superseded, maxAge]) g.reset();
      const chosen = labelledSecrets(review.secrets, maxSecrets);
      for (const s of chosen) {
        const labels = { region: s.region, secret: s.secretId };
        if (s.ageSeconds !== undefined) age.set(labels, s.ageSeconds);
        rotation.set(labels, s.rotationEnabled ? 1 : 0);
        superseded.set(labels, s.supersededPods);
        if (s.maxAgeSeconds !== undefined) maxAge.set(labels, s.maxAgeSeconds);
      }
      const failed = review.secrets.filter((s) => s.error !== undefined).length;
      unlabelled.set(review.secrets.length - failed - chosen.length);
      describeErrors.set(failed);
      overMaxAge.set(review.workloads.filter((w) => w.overMaxAge.length > 0).length);
      unverified.set(review.unverifiedPods.length);
      reviewed.set(Date.parse(review.generatedAt) / 1000);
    },
  };
}

/** GET /metrics (and /healthz) on `port`, all interfaces: plain HTTP, the metrics name no value. */
export async function serveMetrics(metrics: RotationMetrics, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/metrics") {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    res.writeHead(req.url === "/healthz" ? 200 : 404, { "content-type": "text/plain" });
    res.end(req.url === "/healthz" ? "ok\n" : "not found\n");
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, resolve);
  });
  return server;
}
