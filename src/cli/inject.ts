// `sm-injector inject -f FILE|-`: prints the manifests as the webhook would mutate them.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { injectManifests } from "../inject/manifests.ts";
import { InjectorConfigSchema } from "../spec/config.ts";
import { VERSION } from "../version.ts";

export const DEFAULT_IMAGE = `ghcr.io/sm-injector/sm-injector:${VERSION}`;

const HELP = `sm-injector inject -f FILE|- [flags]

Prints every document of FILE (or stdin with -f -), with each pod template that opts in
(label sm-injector.io/inject: "true") mutated exactly as the webhook would: the same decision,
the same refusals. Other documents are printed unchanged, in order. Exit 1, printing nothing
but the webhook's messages, if the webhook would refuse any pod.

Flags:
  -f, --filename FILE          manifest to read; - for stdin (required)
      --diff                   print a unified diff instead of the manifests
      --image IMAGE            init container image (default ${DEFAULT_IMAGE})
      --default-region REGION  region when the pod gives none
      --default-format FORMAT  shell (default), dotenv, json or files
      --default-output-dir DIR default /run/sm-injector
      --allowed-output-roots LIST  comma-separated (default /run,/var/run,/secrets,/etc/secrets)
      --run-as-user UID        init container uid when the app's is unknown (default 65532)
      --run-as-group GID       default 65532
      --allow-node-identity    do not disable the EC2 metadata service in the init container

ServiceAccounts in the same input are used for their eks.amazonaws.com/role-arn annotation, and
Namespaces for their sm-injector.io/allowed-secrets policy, as the webhook would read them from
the API server (one that is not in the input counts as having none).

Examples:
  sm-injector inject -f examples/fastapi-env-file.yaml
  kubectl get deploy api -o yaml | sm-injector inject -f - --diff
`;

export async function runInjectCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      options: {
        filename: { type: "string", short: "f" },
        diff: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        image: { type: "string" },
        "default-region": { type: "string" },
        "default-format": { type: "string" },
        "default-output-dir": { type: "string" },
        "allowed-output-roots": { type: "string" },
        "run-as-user": { type: "string" },
        "run-as-group": { type: "string" },
        "allow-node-identity": { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`sm-injector inject: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const file = values.filename as string | undefined;
  if (!file) {
    process.stderr.write(`sm-injector inject: -f FILE is required (use -f - for stdin)\n\n${HELP}`);
    return 2;
  }
  const config = InjectorConfigSchema.safeParse(
    Object.fromEntries(
      Object.entries({
        image: (values.image as string | undefined) ?? DEFAULT_IMAGE,
        defaultRegion: values["default-region"],
        defaultFormat: values["default-format"],
        defaultOutputDir: values["default-output-dir"],
        allowedOutputRoots: (values["allowed-output-roots"] as string | undefined)
          ?.split(",")
          .map((s) => s.trim()),
        defaultUid: values["run-as-user"] !== undefined ? Number(values["run-as-user"]) : undefined,
        defaultGid: values["run-as-group"] !== undefined ? Number(values["run-as-group"]) : undefined,
        allowNodeIdentity: values["allow-node-identity"],
      }).filter(([, v]) => v !== undefined),
    ),
  );
  if (!config.success) {
    const msgs = config.error.issues.map((i) => `  - ${i.path.join(".")}: ${i.message}`);
    process.stderr.write(`sm-injector inject: invalid options:\n${msgs.join("\n")}\n`);
    return 2;
  }
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  } catch (e) {
    process.stderr.write(`sm-injector inject: cannot read ${file}: ${(e as Error).message}\n`);
    return 2;
  }
  const result = await injectManifests(text, config.data, {
    diff: values.diff === true,
    fileName: file === "-" ? "stdin" : file,
  });
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  if (!result.ok) {
    for (const e of result.errors) process.stderr.write(`error: ${e}\n`);
    return 1;
  }
  process.stdout.write(result.output);
  return 0;
}

/** All of stdin as UTF-8 (for -f -). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
