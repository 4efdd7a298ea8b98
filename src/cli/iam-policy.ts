// `sm-injector iam-policy -f FILE|-`: the least-privilege IAM policies for the roles the input's pods
// fetch with, from the same decision the webhook makes on them. Never calls AWS.
import { buildReport, type ReportOptions, reportTerraform } from "../iam/report.ts";
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

interface Options extends DecisionOptions, ReportOptions {
  file: string;
  output: "json" | "terraform";
  batch: boolean;
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
