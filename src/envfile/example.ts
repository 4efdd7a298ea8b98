// A `.env.example` for local development: every variable a pod receives, with an empty value and
// the Secrets Manager reference it comes from as a comment. Read by python-dotenv (and so
// pydantic-settings' env_file) and Node's parser: `NAME=` is the empty string to both, and a line
// starting with `#` is a comment to both. Pure; it never holds a value.

import type { SecretSource } from "../contract/fetch-spec.ts";
import { versionParam } from "../contract/reference.ts";
import type { ReceivedVariable } from "../inject/pod-fetch.ts";

export type ExampleVariable = ReceivedVariable;

export interface ExampleSection {
  /** Who receives these variables, e.g. `document 1 (Deployment api), containers app, worker`. */
  title: string;
  variables: ExampleVariable[];
}

/** The reference in the annotation syntax: NAME_OR_ARN[?versionStage=…|?versionId=…][#key] (region). */
export function referenceText(source: SecretSource, key?: string): string {
  const version = versionParam(source);
  const region = source.region !== undefined ? ` (${source.region})` : "";
  return `${source.secretId}${version}${key !== undefined ? `#${key}` : ""}${region}`;
}

/**
 * A comment line that stays one comment line: anything but printable ASCII (a JSON key may hold a
 * newline, or text a reader would take for an assignment) is written as a \uNNNN escape.
 */
function comment(text: string): string {
  const safe = text.replace(
    /[^\x20-\x7e]/gu,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, "0")}`,
  );
  return `# ${safe}`.trimEnd();
}

function variableLines(v: ExampleVariable): string[] {
  if ("prefix" in v)
    return [
      comment(
        `${v.prefix === "" ? "every" : `${v.prefix}<KEY> for every`} ${v.except.length > 0 ? "other " : ""}key of the JSON secret ${referenceText(v.source)}: named when the pod fetches it, so not listed here`,
      ),
    ];
  if ("template" in v) return [comment(`composed by the template ${v.template}`), `${v.name}=`];
  return [comment(`from ${referenceText(v.source, v.key)}`), `${v.name}=`];
}

export function renderEnvExample(sections: readonly ExampleSection[], header: readonly string[]): string {
  const parts = [header.map(comment).join("\n")];
  for (const s of sections) parts.push([comment(s.title), ...s.variables.flatMap(variableLines)].join("\n"));
  return `${parts.join("\n\n")}\n`;
}

/** Sections with the same variables merged (their titles joined), in first-seen order. */
export function mergeSections(sections: readonly ExampleSection[]): ExampleSection[] {
  const byBody = new Map<string, ExampleSection>();
  for (const s of sections) {
    const body = JSON.stringify(s.variables);
    const seen = byBody.get(body);
    if (seen) seen.title = `${seen.title}; ${s.title}`;
    else byBody.set(body, { title: s.title, variables: s.variables });
  }
  return [...byBody.values()];
}
