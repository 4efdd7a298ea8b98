// `sm-injector inject -f FILE|-`: prints the manifests as the webhook would mutate them.
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { injectManifests } from "../inject/manifests.ts";
import { VERSION } from "../version.ts";
import { INJECTOR_FLAGS, injectorConfigOf } from "../webhook/config.ts";
import { flag, flagHelp, parseFlags, pickFlags, withoutEnv } from "./flags.ts";

export const DEFAULT_IMAGE = `ghcr.io/sm-injector/sm-injector:${VERSION}`;

/** `inject`'s flags: the file, --diff, and the webhook's injector flags (the same decision needs the same settings). */
export const INJECT_FLAGS = {
  filename: flag({
    input: "text",
    short: "f",
    schema: z.string().min(1),
    value: "FILE",
    help: "manifest to read; - for stdin",
    required: "is required (-f FILE, or -f - for stdin)",
  }),
  diff: flag({
    input: "bool",
    schema: z.boolean().default(false),
    help: "print a unified diff instead of the manifests",
  }),
  ...withoutEnv(INJECTOR_FLAGS),
  image: flag({ ...withoutEnv(INJECTOR_FLAGS).image, schema: z.string().min(1).default(DEFAULT_IMAGE) }),
};

function help(): string {
  return `sm-injector inject -f FILE|- [flags]

Prints every document of FILE (or stdin with -f -), with each pod template that opts in
(label sm-injector.io/inject: "true") mutated exactly as the webhook would: the same decision,
the same refusals. Other documents are printed unchanged, in order. Exit 1, printing nothing
but the webhook's messages, if the webhook would refuse any pod.

Flags (the injector flags are the webhook's, without their environment variables):
${flagHelp(INJECT_FLAGS, { env: false })}

ServiceAccounts in the same input are used for their eks.amazonaws.com/role-arn annotation, and
Namespaces for their sm-injector.io/allowed-secrets policy, as the webhook would read them from
the API server (one that is not in the input counts as having none).

Examples:
  sm-injector inject -f examples/fastapi-env-file.yaml
  kubectl get deploy api -o yaml | sm-injector inject -f - --diff
`;
}

export async function runInjectCommand(argv: string[]): Promise<number> {
  // No environment: a preview depends on its command line only.
  const { values, help: wantsHelp, problems } = parseFlags(INJECT_FLAGS, argv, {});
  if (wantsHelp) {
    process.stdout.write(help());
    return 0;
  }
  if (problems.length > 0) {
    const lines = problems.map((p) => `  - ${p}`).join("\n");
    process.stderr.write(
      `sm-injector inject: invalid options:\n${lines}\nRun \`sm-injector inject --help\` for the flags.\n`,
    );
    return 2;
  }
  const file = values.filename;
  const config = injectorConfigOf(pickFlags(INJECTOR_FLAGS, values));
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  } catch (e) {
    process.stderr.write(`sm-injector inject: cannot read ${file}: ${(e as Error).message}\n`);
    return 2;
  }
  const result = await injectManifests(text, config, {
    diff: values.diff,
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
