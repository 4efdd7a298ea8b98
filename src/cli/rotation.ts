// `sm-injector rotation`: the rotation controller (src/rotation/controller.ts) on a timer, or once.
import { type Logger, pino } from "pino";
import { z } from "zod";
import { INJECT_LABEL, RESTART_ON_ROTATION_ANNOTATION } from "../contract/annotations.ts";
import { MAX_SECRET_AGE_ANNOTATION } from "../report/max-age.ts";
import type { CheckShare, CycleReport, RotationOptions } from "../rotation/controller.ts";
import { DEFAULT_METRICS_MAX_SECRETS } from "../rotation/metrics.ts";
import {
  commandFlags,
  type FlagValues,
  flag,
  flagHelp,
  kubeconfigFlag,
  logLevelFlag,
  parseFlags,
  wholeNumber,
} from "./flags.ts";

/** Every flag of `sm-injector rotation`: parsing, messages and --help come from this table. */
export const ROTATION_FLAGS = {
  kubeconfig: kubeconfigFlag,
  namespace: flag({
    env: "SM_INJECTOR_NAMESPACE",
    input: "text",
    schema: z.string().min(1).optional(),
    value: "NAME",
    help: "watch one namespace only (default: all)",
  }),
  "interval-seconds": flag({
    env: "SM_INJECTOR_INTERVAL_SECONDS",
    input: "int",
    schema: wholeNumber(10, 86_400).default(300),
    help: "time between checks",
  }),
  "min-restart-interval-seconds": flag({
    env: "SM_INJECTOR_MIN_RESTART_INTERVAL_SECONDS",
    input: "int",
    schema: wholeNumber(0, 7 * 86_400).default(600),
    help: "never restart one workload more often",
  }),
  concurrency: flag({
    env: "SM_INJECTOR_CONCURRENCY",
    input: "int",
    schema: wholeNumber(1, 64).default(8),
    help: "DescribeSecret calls in flight",
  }),
  "max-restarts-per-check": flag({
    env: "SM_INJECTOR_MAX_RESTARTS_PER_CHECK",
    input: "int",
    schema: wholeNumber(1, 1000).default(10),
    help: "workloads restarted per check at most; the rest wait for the next",
  }),
  "page-size": flag({
    env: "SM_INJECTOR_PAGE_SIZE",
    input: "int",
    schema: wholeNumber(1, 500).default(50),
    help: "most pods per list request (fewer when a page would exceed 4 MiB)",
  }),
  "dry-run": flag({
    env: "SM_INJECTOR_DRY_RUN",
    input: "bool",
    schema: z.boolean().default(false),
    help: "log what would be restarted, restart nothing",
  }),
  once: flag({
    env: "SM_INJECTOR_ONCE",
    input: "bool",
    schema: z.boolean().default(false),
    help: "one check, then exit (0, or 1 when a restart failed)",
  }),
  "log-level": logLevelFlag,
  "metrics-port": flag({
    env: "SM_INJECTOR_METRICS_PORT",
    input: "int",
    schema: wholeNumber(0, 65_535).default(0),
    help: "serve Prometheus metrics of every injected workload's secrets on this port, /metrics (0: off)",
  }),
  "metrics-max-secrets": flag({
    env: "SM_INJECTOR_METRICS_MAX_SECRETS",
    input: "int",
    schema: wholeNumber(1, 10_000).default(DEFAULT_METRICS_MAX_SECRETS),
    help: "secrets that get metric series at most, the oldest first",
  }),
};

/** The reason of the Warning Event on a workload that reads a secret over its namespace's maximum age. */
export const MAX_AGE_EVENT_REASON = "SecretOverMaxAge";

export type RotationConfig = FlagValues<typeof ROTATION_FLAGS>;

export class RotationConfigError extends Error {}
class CheckTimeout extends Error {}

/** Flags win over SM_INJECTOR_* variables; every problem is listed, naming the flag and the variable. */
export function loadRotationConfig(argv: string[], env: NodeJS.ProcessEnv): RotationConfig {
  const { values, problems } = parseFlags(ROTATION_FLAGS, argv, env);
  if (problems.length > 0) throw new RotationConfigError(problems.join("\n"));
  return values;
}

export function rotationHelp(): string {
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

${flagHelp(ROTATION_FLAGS)}
`;
}

export async function runRotationCommand(argv: string[]): Promise<number> {
  const config = commandFlags("rotation", ROTATION_FLAGS, argv, process.env, rotationHelp);
  if (typeof config === "number") return config;
  const log = pino({ base: { component: "rotation" }, level: config.logLevel });
  const { describedOnce, realDeps, rotationCycle } = await import("../rotation/controller.ts");
  const deps = await realDeps({
    log,
    ...(config.kubeconfig && { kubeconfig: config.kubeconfig }),
    ...(config.namespace && { namespace: config.namespace }),
    pageSize: config.pageSize,
  });
  const options: RotationOptions = {
    minRestartIntervalMs: config.minRestartIntervalSeconds * 1000,
    dryRun: config.dryRun,
    concurrency: config.concurrency,
    maxRestartsPerCheck: config.maxRestartsPerCheck,
    // The webhook's default region, for references that name none (the chart sets both alike).
    defaultRegion: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined,
  };
  const metrics = config.metricsPort > 0 ? await startMetrics(config, deps, options, log) : undefined;
  const check = async () => {
    if (!metrics) return checkOnce(() => rotationCycle(deps, options), log, deps.close);
    // The review after the check reuses what the check read (pods, their owners, each secret's
    // DescribeSecret): one pass.
    const share: CheckShare = {};
    const once = describedOnce(deps);
    const ok = await checkOnce(() => rotationCycle(once, options, share), log, deps.close);
    await metrics.refresh(once, share);
    return ok;
  };
  try {
    return await checkUntilStopped(check, config);
  } finally {
    metrics?.server.close();
    deps.close();
  }
}

/** Checks every interval until SIGTERM/SIGINT (or once); 1 when a --once check failed. */
async function checkUntilStopped(check: () => Promise<boolean>, config: RotationConfig): Promise<number> {
  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopping = true;
    wake?.();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  let failed = false;
  while (!stopping) {
    if (!(await check())) failed = true;
    if (config.once || stopping) break; // SIGTERM during the check: stop now, not after a sleep
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, config.intervalSeconds * 1000);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return failed && config.once ? 1 : 0;
}

/** A check that hangs (an API call that never answers) must not stop the controller silently. */
const CHECK_DEADLINE_MS = 300_000;

/** One check, logged; false when it or a restart failed. After the deadline the process exits 1 (the kubelet restarts it). */
async function checkOnce(
  cycle: () => Promise<CycleReport>,
  log: Logger,
  close: () => void,
): Promise<boolean> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      cycle(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new CheckTimeout(`a check took longer than ${CHECK_DEADLINE_MS / 1000} s`)),
          CHECK_DEADLINE_MS,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    log.info(
      {
        pods: r.pods,
        watchedPods: r.watchedPods,
        unverifiedPods: r.unverifiedPods,
        secrets: r.secrets,
        describeErrors: r.describeErrors,
        stalePods: r.stalePods,
        restarted: r.restarted.map((d) => `${d.workload.kind}/${d.workload.namespace}/${d.workload.name}`),
        held: r.held.length,
        durationMs: Math.round(performance.now() - t0),
      },
      "rotation check done",
    );
    return r.restartErrors === 0;
  } catch (e) {
    if (e instanceof CheckTimeout) {
      log.error({ err: { message: e.message } }, "rotation check timed out; exiting to be restarted");
      close();
      process.exit(1); // the hung call would keep the process alive
    }
    log.error(
      { err: { message: (e as Error).message, code: (e as { code?: unknown }).code } },
      "rotation check failed",
    );
    return false;
  }
}

/**
 * The metrics server, and the review that refreshes it after each check. A failed review leaves
 * the last values (their timestamp says how old) and is logged; it never stops the controller.
 */
async function startMetrics(
  config: RotationConfig,
  deps: Awaited<ReturnType<typeof import("../rotation/controller.ts").realDeps>>,
  options: RotationOptions,
  log: Logger,
) {
  const { createRotationMetrics, serveMetrics } = await import("../rotation/metrics.ts");
  const { maxAgeWarnings, reviewCluster } = await import("../report/review.ts");
  const metrics = createRotationMetrics(config.metricsMaxSecrets);
  const server = await serveMetrics(metrics, config.metricsPort);
  log.info({ port: config.metricsPort, maxSecrets: config.metricsMaxSecrets }, "serving metrics on /metrics");
  const refresh = async (cycleDeps: typeof deps, share: CheckShare) => {
    try {
      const review = await reviewCluster(cycleDeps, options, share);
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
