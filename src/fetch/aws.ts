// The AWS edge: GetSecretValue with our own bounded, full-jitter retries under one overall deadline.
//
// One retry layer per call: the Secrets Manager clients have the SDK's retries switched off
// (maxAttempts 1), so our loop is the only one and the deadline is exact. Credentials come from the
// SDK's default chain (IRSA web identity through STS, EKS Pod Identity, …); those providers keep
// their own small retry (the STS client's standard mode, the container provider's 3 tries) and we
// resolve credentials once per region before the first call, without retrying them ourselves.
import http from "node:http";
import https from "node:https";
import {
  BatchGetSecretValueCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
  type SecretsManagerClientConfig,
  type SecretValueEntry,
} from "@aws-sdk/client-secrets-manager";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { SecretSource } from "../contract/fetch-spec.ts";
import { AwsCallError, EMPTY_CODE } from "./errors.ts";
import { type FetchedSecret, hasLoneSurrogate } from "./resolve.ts";
import { classify, DEFAULT_RETRY, type RetryPolicy, withRetries } from "./retry.ts";
import { ROLE_SESSION_NAME_ENV } from "./session-name.ts";

/** BatchGetSecretValue takes at most 20 secret ids. */
export const BATCH_LIMIT = 20;

/**
 * Whether `source` can be read by BatchGetSecretValue, which returns the AWSCURRENT version only:
 * not when the reference pins a version id or another stage.
 */
export function batchable(source: SecretSource): boolean {
  return (
    source.versionId === undefined &&
    (source.versionStage === undefined || source.versionStage === "AWSCURRENT")
  );
}

/**
 * Groups the sources into BatchGetSecretValue calls (same region, AWSCURRENT, at most 20 each) and
 * single GetSecretValue calls (pinned versions, and a region with one secret). Fewer calls means fewer
 * round trips and less throttling: 20 secrets of one region are one call.
 */
export function planCalls(sources: readonly SecretSource[]): {
  batches: SecretSource[][];
  singles: SecretSource[];
} {
  const byRegion = new Map<string, SecretSource[]>();
  const singles: SecretSource[] = [];
  for (const s of sources) {
    if (!batchable(s)) {
      singles.push(s);
      continue;
    }
    const key = s.region ?? "";
    const group = byRegion.get(key) ?? [];
    group.push(s);
    byRegion.set(key, group);
  }
  const batches: SecretSource[][] = [];
  for (const group of byRegion.values()) {
    if (group.length === 1) {
      singles.push(group[0] as SecretSource);
      continue;
    }
    // Evenly sized chunks (25 → 13 + 12, not 20 + 5): the calls run in parallel.
    const n = Math.ceil(group.length / BATCH_LIMIT);
    const size = Math.ceil(group.length / n);
    for (let i = 0; i < group.length; i += size) batches.push(group.slice(i, i + size));
  }
  return { batches, singles };
}

export interface BatchResult {
  /**
   * Requested secret id → its value. The ids the call gave no value for (an entry in its Errors, or
   * absent from the answer) are fetched again one by one, so that their error is exactly
   * GetSecretValue's, with its retries.
   */
  fetched: Map<string, FetchedSecret>;
  attempts: number;
}

/**
 * The answer's entry for a requested id: its name or full ARN exactly, else (for a partial ARN, which
 * leaves out the "-" and 6 random characters AWS appends to the name) the one ARN it is a prefix of.
 * Exact matches first: a secret may be named like another one's ARN suffix.
 */
function entryFor(entries: readonly SecretValueEntry[], secretId: string): SecretValueEntry | undefined {
  const exact = entries.find((e) => e.Name === secretId || e.ARN === secretId);
  if (exact || !secretId.startsWith("arn:")) return exact;
  const partial = entries.filter(
    (e) => e.ARN?.length === secretId.length + 7 && e.ARN.startsWith(`${secretId}-`),
  );
  return partial.length === 1 ? partial[0] : undefined;
}

/**
 * The secret from a GetSecretValue answer or a BatchGetSecretValue entry, or undefined when it has
 * neither SecretString nor SecretBinary: a malformed answer, never an empty value.
 */
function fetchedFrom(
  secretId: string,
  out: {
    ARN?: string | undefined;
    VersionId?: string | undefined;
    VersionStages?: string[] | undefined;
    SecretString?: string | undefined;
    SecretBinary?: Uint8Array | undefined;
  },
): FetchedSecret | undefined {
  const text = out.SecretString;
  if (text === undefined && out.SecretBinary === undefined) return undefined;
  return {
    secretId,
    ...(out.ARN !== undefined && { arn: out.ARN }),
    ...(out.VersionId !== undefined && { versionId: out.VersionId }),
    ...(out.VersionStages !== undefined && { versionStages: out.VersionStages }),
    value: text === undefined ? Buffer.from(out.SecretBinary as Uint8Array) : Buffer.from(text, "utf8"),
    binary: text === undefined,
    // Buffer.from would write U+FFFD for it: flagged, and refused by resolveVariables.
    ...(text !== undefined && hasLoneSurrogate(text) && { loneSurrogate: true }),
  };
}

/** "No such secret or version": the only failure an optional entry may skip. */
export const MISSING_CODE = "ResourceNotFoundException";

export interface FetcherOptions {
  concurrency: number;
  /** The overall deadline: aborts every call and stops retrying. */
  signal: AbortSignal;
  /** Counts every GetSecretValue attempt, for the summary. */
  onAttempt?: () => void;
  retry?: Partial<RetryPolicy>;
  /** One attempt that takes longer (a hung connection) is abandoned and retried. */
  attemptTimeoutMs: number;
  /** The IRSA session name (see session-name.ts); undefined leaves the SDK's default. */
  roleSessionName?: string | undefined;
  /**
   * Settings every client gets over ours. Only the start-up snapshot's warm-up sets them (an
   * in-memory request handler, made-up credentials and every setting given: see
   * src/cli/fetch-snapshot.ts); with a requestHandler here no HTTP agent is made.
   */
  clientConfig?: SecretsManagerClientConfig | undefined;
}

export type FetchResult =
  | (FetchedSecret & { attempts: number })
  | { missing: true; code: string; message: string; attempts: number };

function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export class SecretFetcher {
  private readonly clients = new Map<string, SecretsManagerClient>();
  private readonly credentials = new Map<string, Promise<void>>();
  private readonly handler: NodeHttpHandler | undefined;
  private readonly agents: (http.Agent | https.Agent)[] = [];
  private readonly retry: RetryPolicy;

  constructor(private readonly opts: FetcherOptions) {
    if (opts.clientConfig?.requestHandler === undefined) {
      // Keep-alive: every call after the first to a region reuses a connection (TLS handshakes
      // cost more than the calls themselves); one socket per call in flight.
      const agentOptions = { keepAlive: true, maxSockets: opts.concurrency };
      const httpAgent = new http.Agent(agentOptions);
      const httpsAgent = new https.Agent(agentOptions);
      this.agents.push(httpAgent, httpsAgent);
      this.handler = new NodeHttpHandler({
        httpAgent,
        httpsAgent,
        connectionTimeout: Math.min(3000, opts.attemptTimeoutMs),
        requestTimeout: opts.attemptTimeoutMs,
        // Without it the SDK only logs a warning when requestTimeout passes, and a hung attempt
        // would use up the whole deadline instead of being retried.
        throwOnRequestTimeout: true,
      });
    }
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    // The SDK's web identity provider reads it when the first client resolves its credentials.
    if (opts.roleSessionName !== undefined) process.env[ROLE_SESSION_NAME_ENV] = opts.roleSessionName;
  }

  /** Created on first use: a pod that reads one region never builds a second client. */
  private client(region: string | undefined): SecretsManagerClient {
    const key = region ?? "";
    let c = this.clients.get(key);
    if (!c) {
      c = new SecretsManagerClient({
        ...(region !== undefined && { region }),
        maxAttempts: 1,
        requestHandler: this.handler,
        ...this.opts.clientConfig,
      });
      this.clients.set(key, c);
    }
    return c;
  }

  /**
   * Resolves the client's credentials once (the SDK memoizes them for the calls that follow), so a
   * missing token file or a refused AssumeRoleWithWebIdentity is one error, told apart from the
   * GetSecretValue errors, and never retried by our loop on top of the provider's own retries.
   */
  private ensureCredentials(region: string | undefined): Promise<void> {
    const key = region ?? "";
    let p = this.credentials.get(key);
    if (!p) {
      const client = this.client(region);
      p = untilAborted(
        Promise.resolve().then(() => client.config.credentials()),
        this.opts.signal,
      ).then(
        () => undefined,
        (err: unknown) => {
          if (this.opts.signal.aborted)
            throw new AwsCallError(
              "DeadlineExceeded",
              "no credentials before the deadline",
              "credentials",
              0,
              true,
            );
          const c = classify(err);
          throw new AwsCallError(c.code, c.message, "credentials", 0);
        },
      );
      this.credentials.set(key, p);
    }
    return p;
  }

  /** One GetSecretValue, retried on throttling and transient errors until maxAttempts or the deadline. */
  async get(source: SecretSource): Promise<FetchResult> {
    await this.ensureCredentials(source.region);
    const client = this.client(source.region);
    const input = {
      SecretId: source.secretId,
      ...(source.versionId !== undefined && { VersionId: source.versionId }),
      ...(source.versionStage !== undefined && { VersionStage: source.versionStage }),
    };
    try {
      const { value: out, attempts } = await withRetries(
        // A new command per attempt: a sent command keeps middleware state.
        () => client.send(new GetSecretValueCommand(input), { abortSignal: this.opts.signal }),
        {
          policy: this.retry,
          signal: this.opts.signal,
          ...(this.opts.onAttempt && { onAttempt: this.opts.onAttempt }),
        },
      );
      const secret = fetchedFrom(source.secretId, out);
      if (!secret)
        throw new AwsCallError(
          EMPTY_CODE,
          "the answer had neither SecretString nor SecretBinary",
          "call",
          attempts,
        );
      return { ...secret, attempts };
    } catch (e) {
      // AccessDenied is deliberately not "missing", even for optional entries: fail closed. IAM
      // answers AccessDenied for a secret that may well exist, and skipping it would start the pod
      // without a secret it is meant to have, hiding a policy mistake as a silently absent variable.
      if (e instanceof AwsCallError && e.code === MISSING_CODE)
        return { missing: true, code: e.code, message: e.message, attempts: e.attempts };
      throw e;
    }
  }

  /**
   * One BatchGetSecretValue for `sources` (one region, at most 20, see planCalls), not retried.
   * Throws AwsCallError when the call fails (AccessDenied without the
   * secretsmanager:BatchGetSecretValue permission, throttling, ...): the caller then uses get().
   */
  async getBatch(sources: readonly SecretSource[]): Promise<BatchResult> {
    const region = sources[0]?.region;
    await this.ensureCredentials(region);
    const client = this.client(region);
    const ids = [...new Set(sources.map((s) => s.secretId))];
    // One attempt: on any failure (throttling included: its quota is 100 calls/s per region, where
    // GetSecretValue's is 10,000) the caller reads the secrets one by one instead.
    const { value: out, attempts } = await withRetries(
      () =>
        client.send(new BatchGetSecretValueCommand({ SecretIdList: ids }), {
          abortSignal: this.opts.signal,
        }),
      {
        policy: { ...this.retry, maxAttempts: 1 },
        signal: this.opts.signal,
        ...(this.opts.onAttempt && { onAttempt: this.opts.onAttempt }),
      },
    );
    const fetched = new Map<string, FetchedSecret>();
    const entries = out.SecretValues ?? [];
    for (const id of ids) {
      const entry = entryFor(entries, id);
      const secret = entry && fetchedFrom(id, entry);
      if (secret) fetched.set(id, secret);
    }
    return { fetched, attempts };
  }

  destroy(): void {
    for (const c of this.clients.values()) c.destroy();
    this.handler?.destroy();
    for (const a of this.agents) a.destroy();
  }
}
