// `sm-injector report`: the review of a cluster's secrets (src/report/review.ts) as tables or JSON.
// Read-only: Kubernetes list/get, AWS DescribeSecret; never GetSecretValue.
import { pino } from "pino";
import { z } from "zod";
import { INJECT_LABEL } from "../contract/annotations.ts";
import { MAX_SECRET_AGE_ANNOTATION } from "../report/max-age.ts";
import { OUTPUT_FORMATS } from "../report/render.ts";
import { commandFlags, flag, flagHelp, kubeconfigFlag, wholeNumber } from "./flags.ts";

/** Every flag of `sm-injector report`: parsing, messages and --help come from this table. */
export const REPORT_FLAGS = {
  kubeconfig: kubeconfigFlag,
  namespace: flag({
    env: "SM_INJECTOR_NAMESPACE",
    input: "text",
    schema: z.string().min(1).optional(),
    value: "NAME",
    help: "one namespace only (default: all)",
  }),
  output: flag({
    env: "SM_INJECTOR_OUTPUT",
    input: "text",
    short: "o",
    schema: z.enum(OUTPUT_FORMATS).default("table"),
    value: "FORMAT",
    help: "table or json",
  }),
  concurrency: flag({
    env: "SM_INJECTOR_CONCURRENCY",
    input: "int",
    schema: wholeNumber(1, 64).default(8),
    help: "DescribeSecret calls in flight",
  }),
  "page-size": flag({
    env: "SM_INJECTOR_PAGE_SIZE",
    input: "int",
    schema: wholeNumber(1, 500).default(50),
    help: "most objects per list request",
  }),
};

export function reportHelp(): string {
  return `sm-injector report [flags]

Reviews the secrets of a cluster: every Deployment, StatefulSet, DaemonSet and CronJob whose pod
template is labelled ${INJECT_LABEL}=true, the secrets it references, the version each running pod
started with (verified against the workload as the rotation controller does; what a pod claims
beyond its workload's template is left out), each secret's rotation state (RotationEnabled, last
rotated, last changed, next rotation, age) and which other workloads read it. A namespace may set
${MAX_SECRET_AGE_ANNOTATION} (e.g. "90d"): older secrets its workloads read are listed.

Read-only. Kubernetes RBAC: list pods, deployments, statefulsets, daemonsets, cronjobs; get
replicasets, controllerrevisions, jobs, deployments, statefulsets, daemonsets, cronjobs, namespaces
(the chart's rotation.reportClusterRole). AWS: secretsmanager:DescribeSecret only (no value is read).
AWS_REGION is the region of references that name none (the webhook's default region).

${flagHelp(REPORT_FLAGS)}
`;
}

export async function runReportCommand(argv: string[]): Promise<number> {
  const config = commandFlags("report", REPORT_FLAGS, argv, process.env, reportHelp);
  if (typeof config === "number") return config;
  const { realDeps } = await import("../rotation/controller.ts");
  const { reviewCluster } = await import("../report/review.ts");
  const { renderReview } = await import("../report/render.ts");
  const deps = await realDeps({
    log: pino({ level: "silent" }),
    ...(config.kubeconfig && { kubeconfig: config.kubeconfig }),
    ...(config.namespace && { namespace: config.namespace }),
    pageSize: config.pageSize,
  });
  try {
    const review = await reviewCluster(deps, {
      concurrency: config.concurrency,
      defaultRegion: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined,
    });
    process.stdout.write(renderReview(review, config.output));
    return 0;
  } catch (e) {
    const err = e as { message?: string; code?: unknown };
    process.stderr.write(
      `sm-injector report: cannot review the cluster: ${String(err.message ?? e).split("\n")[0]}${err.code !== undefined ? ` (${String(err.code)})` : ""}\n`,
    );
    return 1;
  } finally {
    deps.close();
  }
}
