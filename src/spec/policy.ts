// Per-namespace secret policy: a platform team annotates a Namespace with the secret names its pods
// may reference, e.g. `sm-injector.io/allowed-secrets: "erp/production/*, erp/shared/*"`. IAM stays
// the real guard; this refuses a wrong reference at `kubectl apply` time, with a clear message,
// instead of at pod start. Pure.
import type { InjectionSpec } from "./compile.ts";
import { parseSecretId } from "./reference.ts";

export const NAMESPACE_POLICY_ANNOTATION = "sm-injector.io/allowed-secrets";

export interface SecretPolicy {
  readonly patterns: readonly string[];
}

/** `*` matches any run of characters, `/` included; everything else is literal. */
function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\=@-]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}

export function parseSecretPolicy(value: string | undefined): SecretPolicy | undefined {
  if (value === undefined) return undefined;
  const patterns = value
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return { patterns };
}

/** One message per referenced secret that the namespace does not allow. */
export function checkSecretPolicy(
  spec: InjectionSpec,
  policy: SecretPolicy | undefined,
  namespace: string,
): string[] {
  if (!policy) return [];
  const res = policy.patterns.map(globToRegExp);
  const errors: string[] = [];
  for (const id of spec.secretIds) {
    const parsed = parseSecretId(id);
    const name = parsed.ok ? parsed.value.name : id;
    if (!res.some((r) => r.test(name) || r.test(id))) {
      errors.push(
        `secret "${id}" is not allowed in namespace ${namespace}: its ${NAMESPACE_POLICY_ANNOTATION} annotation allows ${policy.patterns.length ? policy.patterns.join(", ") : "no secrets"}; ask the platform team to extend it or use an allowed secret`,
      );
    }
  }
  return errors;
}
