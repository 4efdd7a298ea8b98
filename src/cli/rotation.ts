// `sm-injector rotation`: the rotation controller (src/rotation/controller.ts) on a timer, or once.
import { parseArgs } from "node:util";
import { type Logger, pino } from "pino";
import { z } from "zod";
import { MAX_SECRET_AGE_ANNOTATION } from "../report/max-age.ts";
import { DEFAULT_METRICS_MAX_SECRETS } from "../rotation/metrics.ts";
import { INJECT_LABEL, RESTART_ON_ROTATION_ANNOTATION } from "../spec/annotations.ts";

/** The reason of the Warning Event on a workload that reads a secret over its namespace's maximum age. */
export const MAX_AGE_EVENT_REASON = "SecretOverMaxAge";

export const ROTATION_OPTIONS = {
  kubeconfig: ["SM_INJECTOR_KUBECONFIG", "kubeconfig file (default: in-cluster, then KUBECONFIG)"],
  namespace: ["SM_INJECTOR_NAMESPACE", "watch one namespace only (default: all)"],
  "interval-seconds": ["SM_INJECTOR_INTERVAL_SECONDS", "time between checks (default 300)"],
  "min-restart-interval-seconds": [
    "SM_INJECTOR_MIN_RESTART_INTERVAL_SECONDS",
    "never restart one workload more often (default 600)",
  ],
  concurrency: ["SM_INJECTOR_CONCURRENCY", "DescribeSecret calls in flight (default 8)"],
  "max-restarts-per-check": [
    "SM_INJECTOR_MAX_RESTARTS_PER_CHECK",
    "workloads restarted per check at most; the rest wait for the next (default 10)",
  ],
  "page-size": [
    "SM_INJECTOR_PAGE_SIZE",
    "most pods per list request (default 50; fewer when a page would exceed 4 MiB)",
  ],
  "dry-run": ["SM_INJECTOR_DRY_RUN", "true: log what would be restarted, restart nothing (default false)"],
  once: ["SM_INJECTOR_ONCE", "true: one check, then exit (0, or 1 when a restart failed)"],
  "log-level": ["SM_INJECTOR_LOG_LEVEL", "info (default), debug, warn, error"],
  "metrics-port": [
    "SM_INJECTOR_METRICS_PORT",
    "serve Prometheus metrics of every injected workload's secrets on this port, /metrics (default 0: off)",
  ],
  "metrics-max-secrets": [
    "SM_INJECTOR_METRICS_MAX_SECRETS",
    `secrets that get metric series at most, the oldest first (default ${DEFAULT_METRICS_MAX_SECRETS})`,
  ],
} as const;

const Int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const Bool = z
  .enum(["true", "false"])
  .default("false")
  .transform((v) => v === "true");

const RotationConfigSchema = z.strictObject({
  kubeconfig: z.string().min(1).optional(),
  namespace: z.string().min(1).optional(),
  intervalSeconds: Int(10, 86_400).default(300),
  minRestartIntervalSeconds: Int(0, 7 * 86_400).default(600),
  concurrency: Int(1, 64).default(8),
  maxRestartsPerCheck: Int(1, 1000).default(10),
  pageSize: Int(1, 500).default(50),
  dryRun: Bool,
  once: Bool,
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  metricsPort: Int(0, 65_535).default(0),
  metricsMaxSecrets: Int(1, 10_000).default(DEFAULT_METRICS_MAX_SECRETS),
});
export type RotationConfig = z.infer<typeof RotationConfigSchema>;

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export class RotationConfigError extends Error {}
class CheckTimeout extends Error {}

/** Flags win over SM_INJECTOR_* variables; every problem is listed, naming the flag and the variable. */
export function loadRotationConfig(argv: string[], env: NodeJS.ProcessEnv): RotationConfig {
  let values: Record<string, string | boolean | undefined>;
  // `--once` alone means --once=true (and --dry-run likewise); `--once=false` is accepted too.
  const args = argv.map((a) => (a === "--once" || a === "--dry-run" ? `${a}=true` : a));
  try {
    ({ values } = parseArgs({
      args,
      options: Object.fromEntries(Object.keys(ROTATION_OPTIONS).map((f) => [f, { type: "string" as const }])),
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new RotationConfigError((e as Error).message);
  }
  const raw: Record<string, string> = {};
  for (const [flag, [variable]] of Object.entries(ROTATION_OPTIONS)) {
    const v = values[flag] ?? env[variable];
    if (v !== undefined) raw[camel(flag)] = String(v);
  }
  const parsed = RotationConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new RotationConfigError(
      parsed.error.issues
        .map((i) => {
          const flag = Object.keys(ROTATION_OPTIONS).find((f) => camel(f) === i.path[0]) ?? String(i.path[0]);
          const variable = ROTATION_OPTIONS[flag as keyof typeof ROTATION_OPTIONS]?.[0];
          return `--${flag}${variable ? ` (${variable})` : ""}: ${i.message}`;
        })
        .join("\n"),
    );
  return parsed.data;
}

export function rotationHelp(): string {
  const rows = Object.entries(ROTATION_OPTIONS).map(
    ([flag, [env, desc]]) => `  --${flag.padEnd(30)} ${env.padEnd(42)} ${desc}`,
  );
  return `sm-injector rotation [flags]

Restarts workloads (Deployments, StatefulSets, DaemonSets) whose pods run with a secret version that
is no longer current, for workloads whose own pod template is labelled ${INJECT_LABEL}=true and
annotated ${RESTART_ON_ROTATION_ANNOTATION}: "true". Each check streams the running labelled pods
page by page, reads the versions each one fetched from its status, verifies that the pod belongs to
the workload's template (selector, ReplicaSet or ControllerRevision controlled by the workload),
asks Secrets Manager (DescribeSecret, no values) where each stage the template references points
now, and stamps a stale workload's pod template like \`kubectl rollout restart\`, once per set of
current versions. What a pod claims about other secrets or other workloads is ignored and logged.
Needs Kubernetes RBAC: list pods; get replicasets and controllerrevisions; get and patch
deployments, statefulsets, daemonsets. AWS: secretsmanager:DescribeSecret on the secrets; AWS_REGION
is also the region of references that name none (set it to the webhook's default region).

With --metrics-port, each check also reviews every workload labelled for injection (as
\`sm-injector report\` does) and exports secret age, rotation enabled, pods on a superseded version
and the namespace's ${MAX_SECRET_AGE_ANNOTATION} per secret, and records a Warning Event
(reason ${MAX_AGE_EVENT_REASON}) on each workload that reads a secret older than that. It needs list
on deployments, statefulsets, daemonsets, cronjobs; get on jobs, cronjobs, namespaces; and create,
get, patch on events.

${rows.join("\n")}
`;
}

export async function runRotationCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(rotationHelp());
    return 0;
  }
  let config: RotationConfig;
  try {
    config = loadRotationConfig(argv, process.env);
  } catch (e) {
    if (!(e instanceof RotationConfigError)) throw e;
    process.stderr.write(`sm-injector rotation: ${e.message.split("\n").join("\nsm-injector rotation: ")}\n`);
    return 2;
  }
  const log = pino({ base: { component: "rotation" }, level: config.logLevel });
  const { realDeps, rotationCycle } = await import("../rotation/controller.ts");
  const deps = await realDeps({
    log,
    ...(config.kubeconfig && { kubeconfig: config.kubeconfig }),
    ...(config.namespace && { namespace: config.namespace }),
    pageSize: config.pageSize,
  });
  const options = {
    minRestartIntervalMs: config.minRestartIntervalSeconds * 1000,
    dryRun: config.dryRun,
    concurrency: config.concurrency,
    maxRestartsPerCheck: config.maxRestartsPerCheck,
    // The webhook's default region, for references that name none (the chart sets both alike).
    defaultRegion: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined,
  };
  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopping = true;
    wake?.();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  let failed = false;
  const metrics = config.metricsPort > 0 ? await startMetrics(config, deps, options, log) : undefined;
  try {
    while (!stopping) {
      const t0 = performance.now();
      try {
        // A check that hangs (an API call that never answers) must not stop the controller silently:
        // after the deadline it exits non-zero, and the kubelet restarts it.
        const deadlineMs = 300_000;
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([
          rotationCycle(deps, options),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new CheckTimeout(`a check took longer than ${deadlineMs / 1000} s`)),
              deadlineMs,
            );
          }),
        ]).finally(() => clearTimeout(timer));
        if (r.restartErrors > 0) failed = true;
        log.info(
          {
            pods: r.pods,
            watchedPods: r.watchedPods,
            unverifiedPods: r.unverifiedPods,
            secrets: r.secrets,
            describeErrors: r.describeErrors,
            stalePods: r.stalePods,
            restarted: r.restarted.map(
              (d) => `${d.workload.kind}/${d.workload.namespace}/${d.workload.name}`,
            ),
            held: r.held.length,
            durationMs: Math.round(performance.now() - t0),
          },
          "rotation check done",
        );
        await metrics?.refresh();
      } catch (e) {
        if (e instanceof CheckTimeout) {
          log.error({ err: { message: e.message } }, "rotation check timed out; exiting to be restarted");
          deps.close();
          process.exit(1); // the hung call would keep the process alive
        }
        failed = true;
        log.error(
          { err: { message: (e as Error).message, code: (e as { code?: unknown }).code } },
          "rotation check failed",
        );
      }
      if (config.once || stopping) break; // SIGTERM during the check: stop now, not after a sleep
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, config.intervalSeconds * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    metrics?.server.close();
    deps.close();
  }
  return failed && config.once ? 1 : 0;
}

/**
 * The metrics server, and the review that refreshes it after each check. A failed review leaves
 * the last values (their timestamp says how old) and is logged; it never stops the controller.
 */
async function startMetrics(
  config: RotationConfig,
  deps: Awaited<ReturnType<typeof import("../rotation/controller.ts").realDeps>>,
  options: { concurrency: number; defaultRegion: string | undefined },
  log: Logger,
) {
  const { createRotationMetrics, serveMetrics } = await import("../rotation/metrics.ts");
  const { maxAgeWarnings, reviewCluster } = await import("../report/review.ts");
  const metrics = createRotationMetrics(config.metricsMaxSecrets);
  const server = await serveMetrics(metrics, config.metricsPort);
  log.info({ port: config.metricsPort, maxSecrets: config.metricsMaxSecrets }, "serving metrics on /metrics");
  const refresh = async () => {
    try {
      const review = await reviewCluster(deps, options);
      for (const { workload, message, key } of maxAgeWarnings(review)) {
        log.warn({ ...workload }, message);
        await deps
          .warnWorkload(workload, { reason: MAX_AGE_EVENT_REASON, message, key })
          .catch((e: unknown) =>
            log.warn({ ...workload, code: (e as { code?: unknown }).code }, "cannot record the Event"),
          );
      }
      // Last: the review's timestamp then says its Events are recorded too.
      metrics.update(review);
    } catch (e) {
      log.error(
        { err: { message: (e as Error).message, code: (e as { code?: unknown }).code } },
        "review for metrics failed",
      );
    }
  };
  return { server, refresh };
}
