// Which secret versions a pod started with: written by the init container (`sm-injector fetch`) as
// its termination message, which the kubelet copies into the pod's status
// (status.initContainerStatuses[].state.terminated.message); read by the rotation controller
// (`sm-injector rotation`) to tell, without any log or value, whether a pod runs with a version that
// is no longer the one its reference points at. Secret ids, regions, stages and version ids only:
// never a value.
import { createHash } from "node:crypto";

/** Where the init container writes it: the container's terminationMessagePath (kubelet's default). */
export const TERMINATION_LOG_ENV = "SM_INJECTOR_TERMINATION_LOG";
export const DEFAULT_TERMINATION_LOG = "/dev/termination-log";
/** The kubelet keeps at most 4096 bytes of a container's termination message... */
export const TERMINATION_MESSAGE_LIMIT = 4096;
/** ...and 12 KiB of the termination messages of all of a pod's containers together. */
export const POD_TERMINATION_MESSAGES_LIMIT = 12 * 1024;

/** The most the kubelet keeps of one container's termination message in a pod of `containers`. */
export function terminationMessageLimit(containers: number): number {
  return Math.min(
    TERMINATION_MESSAGE_LIMIT,
    Math.floor(POD_TERMINATION_MESSAGES_LIMIT / Math.max(1, containers)),
  );
}

/** A reference that can move (a stage, AWSCURRENT by default) and the version it pointed at. */
export interface VersionRecord {
  secretId: string;
  /** The region called ("" when the SDK's default applied and nothing named one). */
  region: string;
  stage: string;
  versionId: string;
}

/** What the pod saw: every record, when they fit; the digest always. */
export interface FetchedVersions {
  records?: VersionRecord[];
  digest: string;
}

const MARKER = "sm-injector/versions";

export function versionKey(r: { secretId: string; region: string; stage: string }): string {
  return JSON.stringify([r.secretId, r.region, r.stage]);
}

/** SHA-256 over the sorted records: equal sets of (secret, region, stage, version) give equal digests. */
export function versionsDigest(records: readonly VersionRecord[]): string {
  const lines = records
    .map((r) => JSON.stringify([r.secretId, r.region, r.stage, r.versionId]))
    .sort()
    .filter((l, i, all) => i === 0 || all[i - 1] !== l);
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}

/**
 * The termination message: JSON of at most `limit` bytes (the records are left out when they would
 * not fit). The digest comes first, so that a message cut shorter by the kubelet (12 KiB shared by
 * all of a pod's containers, sidecars added later included) still carries it.
 */
export function encodeVersions(records: readonly VersionRecord[], limit = TERMINATION_MESSAGE_LIMIT): string {
  const digest = versionsDigest(records);
  const full = JSON.stringify({
    [MARKER]: 1,
    digest,
    records: records.map((r) => [r.secretId, r.region, r.stage, r.versionId]),
  });
  if (Buffer.byteLength(full) <= limit) return full;
  return JSON.stringify({ [MARKER]: 1, digest });
}

const TRUNCATED = new RegExp(`^\\{"${MARKER}":1,"digest":"([0-9a-f]{64})"`);

/** Reads a termination message; undefined when it is not ours (an old release, an error text). */
export function decodeVersions(message: string | undefined): FetchedVersions | undefined {
  if (!message?.startsWith("{")) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(message);
  } catch {
    // Cut short by the kubelet: the digest, at the front, is still whole.
    const digest = TRUNCATED.exec(message)?.[1];
    return digest ? { digest } : undefined;
  }
  const o = v as { [MARKER]?: unknown; digest?: unknown; records?: unknown };
  if (o[MARKER] !== 1 || typeof o.digest !== "string" || !/^[0-9a-f]{64}$/.test(o.digest)) return undefined;
  if (!Array.isArray(o.records)) return { digest: o.digest };
  const records: VersionRecord[] = [];
  for (const r of o.records) {
    if (!Array.isArray(r) || r.length !== 4 || !r.every((x) => typeof x === "string"))
      return { digest: o.digest };
    const [secretId, region, stage, versionId] = r as [string, string, string, string];
    records.push({ secretId, region, stage, versionId });
  }
  return { records, digest: o.digest };
}
