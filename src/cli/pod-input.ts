// The input of the commands that describe what pods will fetch (`iam-policy`, `dotenv`): a manifest
// file or stdin, judged with the webhook's decision under the options that change it.
import { readFile } from "node:fs/promises";
import { type PodFetch, podFetchesOf } from "../inject/pod-fetch.ts";
import { InjectorConfigSchema } from "../spec/config.ts";
import { DEFAULT_IMAGE, readStdin } from "./inject.ts";

/** Webhook options that change which pods are refused or what they fetch. */
export interface DecisionOptions {
  region?: string;
  allowedOutputRoots?: string[];
  batch?: boolean;
}

/** `--allowed-output-roots LIST` as the webhook reads it. */
export const splitRoots = (list: string): string[] => list.split(",").map((s) => s.trim());

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
