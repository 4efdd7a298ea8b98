// `sm-injector iam-policy -f FILE|-`: the least-privilege IAM policies for the roles the input's pods
// fetch with, from the same decision the webhook makes on them. Never calls AWS.
import { type OidcProvider, parseOidcProvider, parseRoleArn } from "../iam/arn.ts";
import {
  buildRolePolicies,
  buildRotationPolicy,
  type PolicyDocument,
  type RolePolicies,
} from "../iam/policy.ts";
import { parseRoleFlags, roleNeedsOf, rotationReadsOf } from "../iam/roles.ts";
import { type NamedDocument, renderTerraform, terraformLabel } from "../iam/terraform.ts";
import type { PodFetch } from "../inject/pod-fetch.ts";
import { type DecisionOptions, finishEarly, parseInputArgs, readPodFetches } from "./pod-input.ts";

const HELP = `sm-injector iam-policy -f FILE|- [flags]

Prints the least-privilege IAM policy of every role the opted-in pods of FILE (or stdin with -f -)
fetch with: secretsmanager:GetSecretValue on exactly the secrets each pod reads, as the webhook
compiles them (names as arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME-?????? — IAM's
"?" matches one character, so the pattern matches Secrets Manager's 6-character suffix and no
longer name; ARNs as written). A role comes from the pod's ServiceAccount
(eks.amazonaws.com/role-arn, IRSA) or from --role-arn (EKS Pod Identity). ServiceAccounts and
Namespaces are read from the input, as \`sm-injector inject\` reads them. Never calls AWS.
Exit 1 if the webhook would refuse a pod or a pod has no role (the message says how to fix it).

Flags:
  -f, --filename FILE          manifest to read; - for stdin (required)
  -o, --output FORMAT          json (default) or terraform (data "aws_iam_policy_document" blocks)
      --role-arn [NS/SA=]ARN   the role of pods of ServiceAccount NS/SA (EKS Pod Identity), or
                               without NS/SA= of every pod that has none; repeatable
      --account ID             account of secrets given by name (default: the role's)
      --region REGION          region of secrets whose pod gives none (the webhook's default region)
      --oidc-provider ISSUER   the cluster's OIDC issuer URL or provider ARN: adds the IRSA trust policy
      --kms-key-arn ARN        customer-managed key of the secrets: adds kms:Decrypt through Secrets
                               Manager for these secrets only; repeatable
      --batch-get-secret-value the webhook runs with --batch-get-secret-value: adds
                               secretsmanager:BatchGetSecretValue (Resource "*")
      --rotation-role-arn ARN  also the rotation controller's policy (DescribeSecret on the secrets of
                               pods annotated sm-injector.io/restart-on-rotation: "true")
      --allowed-output-roots LIST  as the webhook's flag (pods are judged as it would)

Examples:
  sm-injector iam-policy -f deploy.yaml --oidc-provider https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE
  helm template charts/api | sm-injector iam-policy -f - --output terraform > iam.tf
`;

interface Options extends DecisionOptions {
  file: string;
  output: "json" | "terraform";
  roleArns: string[];
  account?: string;
  oidcProvider?: string;
  kmsKeyArns: string[];
  batch: boolean;
  rotationRoleArn?: string;
}

type Parsed = { options: Options } | { exit: number; text: string };

function parseOptions(argv: string[]): Parsed {
  const parsed = parseInputArgs("iam-policy", HELP, argv, {
    output: { type: "string", short: "o" },
    "role-arn": { type: "string", multiple: true },
    account: { type: "string" },
    "oidc-provider": { type: "string" },
    "kms-key-arn": { type: "string", multiple: true },
    "batch-get-secret-value": { type: "boolean" },
    "rotation-role-arn": { type: "string" },
  });
  if ("exit" in parsed) return parsed;
  const { values, file, decision } = parsed;
  const output = (values.output as string | undefined) ?? "json";
  if (output !== "json" && output !== "terraform")
    return {
      exit: 2,
      text: `sm-injector iam-policy: --output must be json or terraform, not ${JSON.stringify(output)}\n`,
    };
  const account = values.account as string | undefined;
  if (account !== undefined && !/^\d{12}$/.test(account))
    return { exit: 2, text: `sm-injector iam-policy: --account must be a 12-digit AWS account id\n` };
  return {
    options: {
      ...decision,
      file,
      output,
      roleArns: (values["role-arn"] as string[] | undefined) ?? [],
      kmsKeyArns: (values["kms-key-arn"] as string[] | undefined) ?? [],
      batch: values["batch-get-secret-value"] === true,
      ...(account !== undefined && { account }),
      ...(typeof values["oidc-provider"] === "string" && { oidcProvider: values["oidc-provider"] }),
      ...(typeof values["rotation-role-arn"] === "string" && {
        rotationRoleArn: values["rotation-role-arn"],
      }),
    },
  };
}

export interface IamPolicyReport {
  roles: RolePolicies[];
  rotationController?: { roleArn: string; policy: PolicyDocument; notes: string[] };
}

function rotationPart(
  o: Options,
  pods: readonly PodFetch[],
  errors: string[],
): IamPolicyReport["rotationController"] {
  if (o.rotationRoleArn === undefined) return undefined;
  const role = parseRoleArn(o.rotationRoleArn);
  if (!role.ok) {
    errors.push(`--rotation-role-arn: ${role.error}`);
    return undefined;
  }
  const reads = rotationReadsOf(pods);
  if (reads.length === 0) {
    errors.push(
      `--rotation-role-arn: no pod of the input is annotated sm-injector.io/restart-on-rotation: "true" (with a reference that does not pin a versionId), so the rotation controller watches no secret of it`,
    );
    return undefined;
  }
  const built = buildRotationPolicy(role.value, reads, o.account);
  if (!built.ok) {
    errors.push(built.error);
    return undefined;
  }
  return { ...built.value, notes: ["the controller reads metadata only (DescribeSecret), never a value"] };
}

/** The policies for the pods, or every problem that stops them being written. */
export function buildReport(
  o: Options,
  pods: readonly PodFetch[],
): { report: IamPolicyReport; errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const flags = parseRoleFlags(o.roleArns);
  let provider: OidcProvider | undefined;
  if (o.oidcProvider !== undefined) {
    const p = parseOidcProvider(o.oidcProvider);
    if (p.ok) provider = p.value;
    else errors.push(p.error);
  }
  if (!flags.ok) return { report: { roles: [] }, errors: [...errors, flags.error], warnings: [] };
  const { needs, errors: roleErrors, warnings } = roleNeedsOf(pods, flags.value);
  errors.push(...roleErrors);
  const roles: RolePolicies[] = [];
  for (const n of needs) {
    const built = buildRolePolicies(n, {
      kmsKeyArns: o.kmsKeyArns,
      ...(o.account !== undefined && { account: o.account }),
      ...(provider && { oidcProvider: provider }),
    });
    if (built.ok) roles.push(built.value);
    else errors.push(built.error);
  }
  const rotationController = rotationPart(o, pods, errors);
  return { report: { roles, ...(rotationController && { rotationController }) }, errors, warnings };
}

/** The report as Terraform data sources: one per role's policy, one per trust policy, one for the controller. */
export function reportTerraform(report: IamPolicyReport, source: string): string {
  const taken = new Set<string>();
  const docs: NamedDocument[] = [];
  for (const r of report.roles) {
    const label = terraformLabel(roleName(r.roleArn), taken);
    const about = [
      `Role ${r.roleArn}`,
      `ServiceAccounts: ${r.serviceAccounts.join(", ")}`,
      ...r.pods.map((p) => `Pod template: ${p}`),
    ];
    docs.push({ label, comment: [...about, ...r.notes.map((n) => `Note: ${n}`)], document: r.policy });
    if (r.trustPolicy)
      docs.push({
        label: terraformLabel(`${label}_trust`, taken),
        comment: [`Trust policy of ${r.roleArn}`],
        document: r.trustPolicy,
      });
  }
  const rc = report.rotationController;
  if (rc)
    docs.push({
      label: terraformLabel("sm_injector_rotation", taken),
      comment: [`Rotation controller role ${rc.roleArn}`, ...rc.notes.map((n) => `Note: ${n}`)],
      document: rc.policy,
    });
  return renderTerraform(docs, [
    `Generated by sm-injector iam-policy from ${source}: the secrets each role's pods fetch.`,
    "Attach with e.g. aws_iam_role_policy { policy = data.aws_iam_policy_document.NAME.json }.",
  ]);
}

const roleName = (arn: string) => arn.slice(arn.lastIndexOf("/") + 1);

export async function runIamPolicyCommand(argv: string[]): Promise<number> {
  const parsed = parseOptions(argv);
  if ("exit" in parsed) return finishEarly(parsed);
  const o = parsed.options;
  const read = await readPodFetches("iam-policy", o.file, o);
  if ("usage" in read) return finishEarly({ exit: 2, text: read.usage });
  const { report, errors, warnings } = buildReport(o, read.pods);
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const all = [...read.errors, ...errors];
  if (all.length > 0) {
    for (const e of all) process.stderr.write(`error: ${e}\n`);
    return 1;
  }
  process.stdout.write(
    o.output === "terraform"
      ? reportTerraform(report, o.file === "-" ? "stdin" : o.file)
      : `${JSON.stringify(report, null, 2)}\n`,
  );
  return 0;
}
