// `sm-injector report`: the review of a cluster's secrets (src/report/review.ts) as tables or JSON.
// Read-only: Kubernetes list/get, AWS DescribeSecret; never GetSecretValue.
import { parseArgs } from "node:util";
import { pino } from "pino";
import { z } from "zod";
import { MAX_SECRET_AGE_ANNOTATION } from "../report/max-age.ts";
import { OUTPUT_FORMATS } from "../report/render.ts";
import { INJECT_LABEL } from "../spec/annotations.ts";

export const REPORT_OPTIONS = {
  kubeconfig: ["SM_INJECTOR_KUBECONFIG", "kubeconfig file (default: in-cluster, then KUBECONFIG)"],
  namespace: ["SM_INJECTOR_NAMESPACE", "one namespace only (default: all)"],
  output: ["SM_INJECTOR_OUTPUT", "table (default) or json"],
  concurrency: ["SM_INJECTOR_CONCURRENCY", "DescribeSecret calls in flight (default 8)"],
  "page-size": ["SM_INJECTOR_PAGE_SIZE", "most objects per list request (default 50)"],
} as const;

const ReportConfigSchema = z.strictObject({
  kubeconfig: z.string().min(1).optional(),
  namespace: z.string().min(1).optional(),
  output: z.enum(OUTPUT_FORMATS).default("table"),
  concurrency: z.coerce.number().int().min(1).max(64).default(8),
  pageSize: z.coerce.number().int().min(1).max(500).default(50),
});
export type ReportConfig = z.infer<typeof ReportConfigSchema>;

export class ReportConfigError extends Error {}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Flags win over SM_INJECTOR_* variables; every problem is listed, naming the flag. */
export function loadReportConfig(argv: string[], env: NodeJS.ProcessEnv): ReportConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...Object.fromEntries(Object.keys(REPORT_OPTIONS).map((f) => [f, { type: "string" as const }])),
        output: { type: "string", short: "o" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new ReportConfigError((e as Error).message);
  }
  const raw: Record<string, string> = {};
  for (const [flag, [variable]] of Object.entries(REPORT_OPTIONS)) {
    const v = values[flag] ?? env[variable];
    if (v !== undefined) raw[camel(flag)] = String(v);
  }
  const parsed = ReportConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new ReportConfigError(
      parsed.error.issues
        .map((i) => {
          const flag = Object.keys(REPORT_OPTIONS).find((f) => camel(f) === i.path[0]) ?? String(i.path[0]);
          return `--${flag}: ${i.message}`;
        })
        .join("\n"),
    );
  return parsed.data;
}

export function reportHelp(): string {
  const rows = Object.entries(REPORT_OPTIONS).map(
    ([flag, [env, desc]]) => `  --${flag.padEnd(14)} ${env.padEnd(26)} ${desc}`,
  );
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

${rows.join("\n")}
`;
}

export async function runReportCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(reportHelp());
    return 0;
  }
  let config: ReportConfig;
  try {
    config = loadReportConfig(argv, process.env);
  } catch (e) {
    if (!(e instanceof ReportConfigError)) throw e;
    process.stderr.write(`sm-injector report: ${e.message.split("\n").join("\nsm-injector report: ")}\n`);
    return 2;
  }
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
