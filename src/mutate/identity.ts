// The AWS identity hand-off: the init container must fetch as the app does (IRSA or EKS Pod
// Identity), never with the node's role. Pure.
import type { V1Container, V1EnvVar, V1Pod, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { AWS_TOKEN_VOLUME_NAME, OWN_TOKEN_DIR } from "../contract/annotations.ts";
import { podContainers } from "../contract/compile.ts";
import { clonePlain, withFields } from "./clone.ts";

/** Variables that carry a pod's AWS identity, as EKS's pod identity webhook sets them. */
export const IDENTITY_ENV = [
  "AWS_ROLE_ARN",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_STS_REGIONAL_ENDPOINTS",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
] as const;

/**
 * Settings of the AWS SDK (not credentials) that the init container should share with the app:
 * custom endpoints (VPC endpoints, FIPS, a local emulator), region.
 */
export const CLIENT_SETTINGS_ENV = [
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_SECRETS_MANAGER",
  "AWS_ENDPOINT_URL_STS",
  "AWS_USE_FIPS_ENDPOINT",
  "AWS_USE_DUALSTACK_ENDPOINT",
] as const;

/** The targeted containers: the regular ones in order, then the init containers (whose own settings count last). */
export function targetedContainers(pod: V1Pod, targets: readonly string[]): V1Container[] {
  return podContainers(pod).filter((c) => targets.includes(c.name));
}

/** The first targeted container's SDK settings, minus names already in `have`. */
export function clientSettingsEnv(
  pod: V1Pod,
  targets: readonly string[],
  have: ReadonlySet<string>,
): V1EnvVar[] {
  const first = targetedContainers(pod, targets)[0];
  return clonePlain(
    (first?.env ?? []).filter(
      (e) => (CLIENT_SETTINGS_ENV as readonly string[]).includes(e.name) && !have.has(e.name),
    ),
  );
}

/** What the webhook read from the pod's ServiceAccount (EKS IRSA annotations). */
export interface ServiceAccountIdentity {
  readonly roleArn?: string;
  readonly audience?: string;
  readonly tokenExpirationSeconds?: number;
  readonly stsRegionalEndpoints?: boolean;
}

export const SA_ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn";
export const SA_AUDIENCE_ANNOTATION = "eks.amazonaws.com/audience";
export const SA_TOKEN_EXPIRATION_ANNOTATION = "eks.amazonaws.com/token-expiration";
export const SA_STS_REGIONAL_ANNOTATION = "eks.amazonaws.com/sts-regional-endpoints";

/** Where our own projected token goes (defined with the contract: an output-dir must not overlap it). */
export { OWN_TOKEN_DIR };

export function serviceAccountIdentity(
  annotations: Record<string, string> | undefined,
): ServiceAccountIdentity {
  const a = annotations ?? {};
  const exp = Number(a[SA_TOKEN_EXPIRATION_ANNOTATION]);
  return {
    ...(a[SA_ROLE_ARN_ANNOTATION] && { roleArn: a[SA_ROLE_ARN_ANNOTATION] }),
    ...(a[SA_AUDIENCE_ANNOTATION] && { audience: a[SA_AUDIENCE_ANNOTATION] }),
    ...(Number.isInteger(exp) && exp >= 600 && { tokenExpirationSeconds: exp }),
    ...(a[SA_STS_REGIONAL_ANNOTATION] !== undefined && {
      stsRegionalEndpoints: a[SA_STS_REGIONAL_ANNOTATION] === "true",
    }),
  };
}

export function hasIdentityEnv(c: V1Container | undefined): boolean {
  return (c?.env ?? []).some(
    (e) => e.name === "AWS_ROLE_ARN" || e.name === "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  );
}

/** Whether the webhook must look up the ServiceAccount: none of the targets carries an identity yet. */
export function needsServiceAccountLookup(pod: V1Pod, targets: readonly string[]): boolean {
  return !targetedContainers(pod, targets).some(hasIdentityEnv);
}

export interface IdentityPlan {
  env: V1EnvVar[];
  mounts: V1VolumeMount[];
  volumes: V1Volume[];
  source: "container" | "serviceaccount" | "none";
}

/** Copies the identity of the first targeted container that has one, else builds IRSA from the ServiceAccount. */
export function planIdentity(
  pod: V1Pod,
  targets: readonly string[],
  sa: ServiceAccountIdentity | undefined,
): IdentityPlan {
  const containers = targetedContainers(pod, targets);
  const from = containers.find(hasIdentityEnv);
  if (from) {
    const env = (from.env ?? []).filter((e) => (IDENTITY_ENV as readonly string[]).includes(e.name));
    const files = env
      .filter(
        (e) =>
          e.name === "AWS_WEB_IDENTITY_TOKEN_FILE" || e.name === "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
      )
      .map((e) => e.value)
      .filter((v): v is string => typeof v === "string");
    const mounts = (from.volumeMounts ?? [])
      .filter((m) => files.some((f) => f.startsWith(`${m.mountPath.replace(/\/+$/, "")}/`)))
      .map((m) => withFields(m, { readOnly: true }));
    return { env: clonePlain(env), mounts: clonePlain(mounts), volumes: [], source: "container" };
  }
  if (sa?.roleArn) {
    const env: V1EnvVar[] = [
      { name: "AWS_ROLE_ARN", value: sa.roleArn },
      { name: "AWS_WEB_IDENTITY_TOKEN_FILE", value: `${OWN_TOKEN_DIR}/token` },
    ];
    if (sa.stsRegionalEndpoints !== false)
      env.push({ name: "AWS_STS_REGIONAL_ENDPOINTS", value: "regional" });
    const region = containers
      .flatMap((c) => c.env ?? [])
      .find((e) => e.name === "AWS_REGION" && e.value !== undefined);
    if (region) env.push({ name: "AWS_REGION", value: region.value as string });
    return {
      env,
      mounts: [{ name: AWS_TOKEN_VOLUME_NAME, mountPath: OWN_TOKEN_DIR, readOnly: true }],
      volumes: [
        {
          name: AWS_TOKEN_VOLUME_NAME,
          projected: {
            sources: [
              {
                serviceAccountToken: {
                  audience: sa.audience ?? "sts.amazonaws.com",
                  expirationSeconds: sa.tokenExpirationSeconds ?? 86400,
                  path: "token",
                },
              },
            ],
          },
        },
      ],
      source: "serviceaccount",
    };
  }
  return { env: [], mounts: [], volumes: [], source: "none" };
}
