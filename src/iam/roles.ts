// Pods → the roles they fetch with and what each role needs. A pod's role is the one its init
// container will use (the ServiceAccount's eks.amazonaws.com/role-arn, or AWS_ROLE_ARN of the app
// container it copies); EKS Pod Identity binds roles outside the pod, so those come from --role-arn.
// Pure.
import { type PodFetch, specSources } from "../inject/pod-fetch.ts";
import { parseRoleArn, type Result, type RoleArn } from "./arn.ts";
import type { RoleNeeds, SecretRead, ServiceAccountRef } from "./policy.ts";

/** `--role-arn` values: one ARN for every pod without a role, and/or NAMESPACE/SERVICEACCOUNT=ARN. */
export interface RoleFlags {
  fallback?: RoleArn;
  byServiceAccount: Map<string, RoleArn>;
}

export function parseRoleFlags(values: readonly string[]): Result<RoleFlags> {
  const flags: RoleFlags = { byServiceAccount: new Map() };
  const errors: string[] = [];
  for (const v of values) {
    const eq = v.startsWith("arn:") ? -1 : v.indexOf("=");
    const key = eq === -1 ? undefined : v.slice(0, eq);
    if (key !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(key)) {
      errors.push(
        `--role-arn ${JSON.stringify(v.slice(0, 300))}: expected ARN or NAMESPACE/SERVICEACCOUNT=ARN`,
      );
      continue;
    }
    const arn = parseRoleArn(eq === -1 ? v : v.slice(eq + 1));
    if (!arn.ok) errors.push(`--role-arn: ${arn.error}`);
    else if (key === undefined) {
      if (flags.fallback && flags.fallback.arn !== arn.value.arn)
        errors.push("--role-arn ARN (for every pod without a role) is given twice with different roles");
      flags.fallback = arn.value;
    } else flags.byServiceAccount.set(key, arn.value);
  }
  return errors.length > 0 ? { ok: false, error: errors.join("\n") } : { ok: true, value: flags };
}

/** The role a pod fetches with and how it assumes it, or how to give it one. */
function podRole(pod: PodFetch, flags: RoleFlags): Result<{ role: RoleArn; irsa: boolean }> {
  const sa = `${pod.namespace}/${pod.serviceAccount}`;
  const flagged = flags.byServiceAccount.get(sa);
  if (pod.identity.kind === "irsa") {
    const role = parseRoleArn(pod.identity.roleArn);
    if (!role.ok)
      return {
        ok: false,
        error: `${pod.where}: its role (ServiceAccount ${sa} or AWS_ROLE_ARN): ${role.error}`,
      };
    if (flagged && flagged.arn !== role.value.arn)
      return {
        ok: false,
        error: `${pod.where}: ServiceAccount ${sa} fetches with ${role.value.arn} (IRSA), but --role-arn ${sa}=${flagged.arn} names another role; drop one of them`,
      };
    return { ok: true, value: { role: role.value, irsa: true } };
  }
  const role = flagged ?? flags.fallback;
  if (role) return { ok: true, value: { role, irsa: false } };
  return {
    ok: false,
    error: `${pod.where}: no IAM role for ServiceAccount ${sa}: add the ServiceAccount to the input with its eks.amazonaws.com/role-arn annotation (IRSA), or pass --role-arn ${sa}=arn:aws:iam::ACCOUNT:role/NAME (EKS Pod Identity; --role-arn ARN alone covers every pod without a role)`,
  };
}

function needsFor(map: Map<string, RoleNeeds>, role: RoleArn): RoleNeeds {
  let needs = map.get(role.arn);
  if (!needs) {
    needs = { role, irsa: [], podIdentity: [], pods: [], secrets: [], batch: false };
    map.set(role.arn, needs);
  }
  return needs;
}

const readsOf = (pod: PodFetch): SecretRead[] =>
  specSources(pod.fetchSpec).map((s) =>
    s.region === undefined ? { secretId: s.secretId } : { secretId: s.secretId, region: s.region },
  );

/** What every role needs, sorted by role ARN, or every pod that has no usable role. */
export function roleNeedsOf(
  pods: readonly PodFetch[],
  flags: RoleFlags,
): { needs: RoleNeeds[]; errors: string[]; warnings: string[] } {
  const map = new Map<string, RoleNeeds>();
  const errors: string[] = [];
  for (const pod of pods) {
    const r = podRole(pod, flags);
    if (!r.ok) {
      errors.push(r.error);
      continue;
    }
    const needs = needsFor(map, r.value.role);
    const sa: ServiceAccountRef =
      pod.identity.kind === "irsa"
        ? { namespace: pod.namespace, name: pod.serviceAccount, audience: pod.identity.audience }
        : { namespace: pod.namespace, name: pod.serviceAccount };
    (r.value.irsa ? needs.irsa : needs.podIdentity).push(sa);
    needs.pods.push(pod.where);
    needs.secrets.push(...readsOf(pod));
    needs.batch ||= pod.fetchSpec.batch;
  }
  const used = new Set(pods.map((p) => `${p.namespace}/${p.serviceAccount}`));
  const warnings = [...flags.byServiceAccount.keys()]
    .filter((sa) => !used.has(sa))
    .map((sa) => `--role-arn ${sa}=…: no opted-in pod of the input runs as ServiceAccount ${sa}`);
  return { needs: [...map.values()].sort((a, b) => (a.role.arn < b.role.arn ? -1 : 1)), errors, warnings };
}

/** The secrets the rotation controller watches: of pods that opt in, without a pinned versionId. */
export function rotationReadsOf(pods: readonly PodFetch[]): SecretRead[] {
  return pods
    .filter((p) => p.restartOnRotation)
    .flatMap((p) =>
      specSources(p.fetchSpec)
        .filter((s) => s.versionId === undefined)
        .map((s) =>
          s.region === undefined ? { secretId: s.secretId } : { secretId: s.secretId, region: s.region },
        ),
    );
}
