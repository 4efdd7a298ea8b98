// The audit line of one admission, bounded in size: every field a pod or a direct caller can choose
// (pod name, user, secret ids, the denial message) is cut to a fixed length, so one hostile request
// can never write a multi-megabyte log line.
import type { ReviewOutcome } from "../admission/review.ts";

/** Longest value of a name-like field (pod, user, namespace, ServiceAccount, identity, reason). */
export const AUDIT_NAME_CHARS = 256;
/** Longest secret id (an ARN is at most ~2 KB), and how many are listed. */
export const AUDIT_SECRET_ID_CHARS = 2048;
export const AUDIT_SECRET_IDS = 100;
/** Longest denial message in the audit line (the API server's copy is capped separately). */
export const AUDIT_MESSAGE_CHARS = 4096;
/** Longest denial message and warning sent back to the API server. */
export const RESPONSE_MESSAGE_CHARS = 32 * 1024;
export const RESPONSE_WARNING_CHARS = 1024;

/** `text` cut to `max` characters, saying how much was left out. */
export function capText(text: string, max: number): string {
  if (text.length <= max) return text;
  // Do not leave half a surrogate pair at the cut.
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}… (${text.length - end} more characters)`;
}

const capOptional = (s: string | undefined, max: number) => (s === undefined ? undefined : capText(s, max));

export interface AuditInput {
  uid: string;
  user: string | undefined;
  outcome: Pick<
    ReviewOutcome,
    | "namespace"
    | "pod"
    | "serviceAccount"
    | "secretIds"
    | "result"
    | "denial"
    | "reason"
    | "identity"
    | "dryRun"
  > & { message?: string | undefined };
  warnings: number;
  ms: number;
}

/** The fields of the audit line, each bounded. */
export function auditFields(a: AuditInput): Record<string, unknown> {
  const o = a.outcome;
  const ids = o.secretIds.slice(0, AUDIT_SECRET_IDS).map((id) => capText(id, AUDIT_SECRET_ID_CHARS));
  return {
    uid: capText(a.uid, AUDIT_NAME_CHARS),
    namespace: capText(o.namespace, AUDIT_NAME_CHARS),
    pod: capText(o.pod, AUDIT_NAME_CHARS),
    serviceAccount: capText(o.serviceAccount, AUDIT_NAME_CHARS),
    secretIds: ids,
    ...(o.secretIds.length > AUDIT_SECRET_IDS && { secretIdsOmitted: o.secretIds.length - AUDIT_SECRET_IDS }),
    result: o.result,
    ...(o.denial !== undefined && { denial: o.denial }),
    reason: capText(o.reason, AUDIT_NAME_CHARS),
    identity: capOptional(o.identity, AUDIT_NAME_CHARS),
    dryRun: o.dryRun,
    user: capOptional(a.user, AUDIT_NAME_CHARS),
    warnings: a.warnings,
    ms: a.ms,
    ...(o.message !== undefined && { message: capText(o.message, AUDIT_MESSAGE_CHARS) }),
  };
}
