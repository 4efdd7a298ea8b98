// A namespace's maximum secret age: `sm-injector.io/max-secret-age: 90d` on the Namespace. Written
// by the platform team (whoever may annotate Namespaces), read by `sm-injector report` and the
// rotation controller's metrics. Pure.

export const MAX_SECRET_AGE_ANNOTATION = "sm-injector.io/max-secret-age";

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400 } as const;
/** More than 100 years is a typo, not a policy. */
const MAX_SECONDS = 100 * 365 * 86_400;
const DURATION = /^([1-9][0-9]{0,9})(s|m|h|d|w)$/;

/** The age in seconds, or a message saying what is wrong and how to write it. */
export function parseMaxSecretAge(text: string): { seconds: number } | { error: string } {
  const m = DURATION.exec(text.trim());
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS] : Number.NaN;
  if (!m || seconds > MAX_SECONDS)
    return {
      error: `${MAX_SECRET_AGE_ANNOTATION} must be a whole number and a unit (s, m, h, d or w) of at most 100 years, such as "90d" or "12w"; got ${JSON.stringify(text.slice(0, 40))}`,
    };
  return { seconds };
}

/** The namespace's maximum secret age, if it sets one (an error when it is malformed). */
export function namespaceMaxSecretAge(
  annotations: Readonly<Record<string, string>>,
): { text: string; seconds: number } | { text: string; error: string } | undefined {
  const text = annotations[MAX_SECRET_AGE_ANNOTATION];
  if (text === undefined) return undefined;
  const parsed = parseMaxSecretAge(text);
  return { text: text.slice(0, 40), ...parsed };
}

/**
 * How old a secret's value is, in seconds: since it was last rotated, else last changed, else
 * created. LastRotatedDate misses a PutSecretValue made by hand after a rotation (the age is then
 * overstated: an alert too early, never too late); LastChangedDate also moves when only the
 * description or tags change (then the age is understated), which is why rotation comes first.
 */
export function secretAgeSeconds(
  dates: {
    lastRotatedDate?: Date | undefined;
    lastChangedDate?: Date | undefined;
    createdDate?: Date | undefined;
  },
  now: number,
): number | undefined {
  const since = dates.lastRotatedDate ?? dates.lastChangedDate ?? dates.createdDate;
  return since ? Math.max(0, Math.floor((now - since.getTime()) / 1000)) : undefined;
}
