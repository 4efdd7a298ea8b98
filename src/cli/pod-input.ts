// The input of the commands that describe what pods will fetch (`iam-policy`, `dotenv`): a manifest
// file or stdin, judged with the webhook's decision under the options that change it.
import { readFile } from "node:fs/promises";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { InjectorConfigSchema } from "../contract/config.ts";
import { type PodFetch, podFetchesOf } from "../inject/pod-fetch.ts";
import { DEFAULT_IMAGE, readStdin } from "./inject.ts";

/** Webhook options that change which pods are refused or what they fetch. */
export interface DecisionOptions {
  region?: string;
  allowedOutputRoots?: string[];
  batch?: boolean;
}

/** The flags every such command has: the input, and the webhook options that change the decision. */
const INPUT_FLAGS = {
  filename: { type: "string", short: "f" },
  region: { type: "string" },
  "allowed-output-roots": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

export type FlagValues = Record<string, string | string[] | boolean | undefined>;

/**
 * Parses `argv` with the input flags plus `extra`: the values, the input file and the decision
 * options; or the help text (exit 0) or a usage error (exit 2) to finish with.
 */
export function parseInputArgs(
  command: string,
  help: string,
  argv: string[],
  extra: ParseArgsOptionsConfig,
): { values: FlagValues; file: string; decision: DecisionOptions } | { exit: number; text: string } {
  let values: FlagValues;
  try {
    values = parseArgs({
      args: argv,
      options: { ...INPUT_FLAGS, ...extra },
      strict: true,
      allowPositionals: false,
    }).values as FlagValues;
  } catch (e) {
    return { exit: 2, text: `sm-injector ${command}: ${(e as Error).message}\n\n${help}` };
  }
  if (values.help) return { exit: 0, text: help };
  const file = values.filename;
  if (typeof file !== "string" || file === "")
    return { exit: 2, text: `sm-injector ${command}: -f FILE is required (use -f - for stdin)\n\n${help}` };
  const roots = values["allowed-output-roots"];
  return {
    values,
    file,
    decision: {
      ...(typeof values.region === "string" && { region: values.region }),
      ...(typeof roots === "string" && { allowedOutputRoots: roots.split(",").map((r) => r.trim()) }),
    },
  };
}

/**
 * What every opted-in pod of `file` (- for stdin) will fetch, with errors for the pods the webhook
 * would refuse; or a usage problem (exit 2) prefixed with `command`.
 */
export async function readPodFetches(
  command: string,
  file: string,
  o: DecisionOptions,
): Promise<{ pods: PodFetch[]; errors: string[] } | { usage: string }> {
  const config = InjectorConfigSchema.safeParse({
    image: DEFAULT_IMAGE,
    batchGetSecretValue: o.batch === true,
    ...(o.region !== undefined && { defaultRegion: o.region }),
    ...(o.allowedOutputRoots && { allowedOutputRoots: o.allowedOutputRoots }),
  });
  if (!config.success) {
    const msgs = config.error.issues.map((i) => `  - ${i.path.join(".")}: ${i.message}`);
    return { usage: `sm-injector ${command}: invalid options:\n${msgs.join("\n")}\n` };
  }
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  } catch (e) {
    return { usage: `sm-injector ${command}: cannot read ${file}: ${(e as Error).message}\n` };
  }
  return podFetchesOf(text, config.data);
}

/** Writes a parse result that ends the command (help on stdout, usage errors on stderr); returns its exit code. */
export function finishEarly(r: { exit: number; text: string }): number {
  (r.exit === 0 ? process.stdout : process.stderr).write(r.text);
  return r.exit;
}
