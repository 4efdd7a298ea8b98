// `sm-injector report` output: a review as tables for a person, or as JSON for a script. Pure.
// Secret ids, regions, stages, version ids and dates only: a review never holds a value.
import type { ReferenceReview, Review, SecretReview, WorkloadReview } from "./review.ts";

export const OUTPUT_FORMATS = ["table", "json"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function renderReview(review: Review, format: OutputFormat): string {
  return format === "json" ? `${JSON.stringify(review, null, 2)}\n` : renderTables(review);
}

/** Most characters of one cell or line the tables print (a pod's owner reference can be long). */
const MAX_CELL = 300;
const UNPRINTABLE = /[\p{Cc}\p{Cf}]/gu;

/**
 * `text` safe to print on a terminal: control and format characters (escape sequences, bidi
 * overrides) become "?", and it is cut at MAX_CELL. Tenant-written names reach the tables (an owner
 * reference's kind, in a pod that could not be verified); JSON output escapes them itself.
 */
export function printable(text: string): string {
  const cut = text.length > MAX_CELL ? `${text.slice(0, MAX_CELL)}…` : text;
  return cut.replace(UNPRINTABLE, "?");
}

/** Columns padded to their widest cell; the last one is not padded. */
export function table(header: readonly string[], cells: ReadonlyArray<readonly string[]>): string {
  const rows = cells.map((r) => r.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

const short = (v: string | null | undefined) => (v ? v.slice(0, 8) : v === null ? "none" : "?");

/** "2 current", "1 on 1a2b3c4d (superseded)", "no running pods". */
function podSummary(ref: ReferenceReview): string {
  if (ref.pods.length === 0) return "no running pods";
  const groups = new Map<string, number>();
  for (const p of ref.pods) {
    const state = p.superseded === true ? "superseded" : p.superseded === false ? "current" : "unknown";
    const key = state === "current" && !ref.pinnedVersionId ? "current" : `${short(p.versionId)} ${state}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups].map(([k, n]) => `${n} ${k}`).join(", ");
}

function workloadRows(w: WorkloadReview): string[][] {
  const id = `${w.kind} ${w.namespace}/${w.name}`;
  if (w.error) return [[id, `(${w.error})`, "", "", "", "", ""]];
  if (w.references.length === 0) return [[id, "(no secrets)", "", "", "", "", ""]];
  return w.references.map((r) => [
    id,
    r.secretId,
    r.region || "-",
    r.pinnedVersionId ? `version ${short(r.pinnedVersionId)}` : (r.stage ?? ""),
    r.pinnedVersionId ? "pinned" : short(r.currentVersionId),
    podSummary(r),
    r.alsoReadBy.join(", ") || "-",
  ]);
}

const date = (iso: string | undefined) => (iso ? iso.slice(0, 16).replace("T", " ") : "-");

/** "93d", "5h", "12m", "40s" (the largest unit that fits, rounded down). */
export function formatAge(seconds: number | undefined): string {
  if (seconds === undefined) return "-";
  if (seconds >= 86_400) return `${Math.floor(seconds / 86_400)}d`;
  if (seconds >= 3600) return `${Math.floor(seconds / 3600)}h`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)}m`;
  return `${seconds}s`;
}

function secretRow(s: SecretReview): string[] {
  if (s.error)
    return [
      s.secretId,
      s.region || "-",
      `DescribeSecret failed: ${s.error}`,
      "",
      "",
      "",
      "",
      "",
      s.readers.join(", "),
    ];
  const over = s.maxAgeSeconds !== undefined && (s.ageSeconds ?? 0) > s.maxAgeSeconds;
  return [
    s.secretId,
    s.region || "-",
    s.rotationEnabled ? "on" : "off",
    date(s.lastRotatedDate),
    date(s.lastChangedDate),
    date(s.nextRotationDate),
    `${formatAge(s.ageSeconds)}${s.maxAgeSeconds !== undefined ? ` / max ${formatAge(s.maxAgeSeconds)}${over ? " OVER" : ""}` : ""}`,
    String(s.supersededPods),
    s.readers.join(", "),
  ];
}

function renderTables(review: Review): string {
  const parts = [
    `Workloads (${review.workloads.length}), the secrets they reference and the versions their running pods started with:`,
    table(
      ["WORKLOAD", "SECRET", "REGION", "STAGE", "CURRENT", "PODS", "ALSO READ BY"],
      review.workloads.flatMap(workloadRows),
    ),
    "",
    `Secrets (${review.secrets.length}):`,
    table(
      [
        "SECRET",
        "REGION",
        "ROTATION",
        "LAST ROTATED",
        "LAST CHANGED",
        "NEXT ROTATION",
        "AGE",
        "SUPERSEDED PODS",
        "READ BY",
      ],
      review.secrets.map(secretRow),
    ),
  ];
  const over = review.workloads.filter((w) => w.overMaxAge.length > 0);
  if (over.length > 0)
    parts.push(
      "",
      "Older than their namespace's sm-injector.io/max-secret-age:",
      ...over.map(
        (w) =>
          `  ${w.kind} ${w.namespace}/${w.name} (max ${w.maxSecretAge?.text}): ${w.overMaxAge.join(", ")}`,
      ),
    );
  const invalid = new Map<string, string>();
  for (const w of review.workloads)
    if (w.maxSecretAge && "error" in w.maxSecretAge) invalid.set(w.namespace, w.maxSecretAge.error);
  for (const [ns, error] of invalid) parts.push("", `Namespace ${ns}: ${error}`);
  if (review.unverifiedPods.length > 0)
    parts.push(
      "",
      `Pods not verified (their claims are left out): ${review.unverifiedPods.length}`,
      ...review.unverifiedPods.slice(0, 20).map((p) => printable(`  ${p.namespace}/${p.pod}: ${p.why}`)),
      ...(review.unverifiedPods.length > 20
        ? [`  ... and ${review.unverifiedPods.length - 20} more (--output json lists all)`]
        : []),
    );
  return `${parts.join("\n")}\n`;
}
