// The AWS edge: GetSecretValue with our own bounded, full-jitter retries under one overall deadline.
//
// One retry layer per call: the Secrets Manager clients have the SDK's retries switched off
// (maxAttempts 1), so our loop is the only one and the deadline is exact. Credentials come from the
// SDK's default chain (IRSA web identity through STS, EKS Pod Identity, …); those providers keep
// their own small retry (the STS client's standard mode, the container provider's 3 tries) and we
// resolve credentials once per region before the first call, without retrying them ourselves.
import http from "node:http";
import https from "node:https";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { SecretSource } from "../spec/fetch-spec.ts";
import { AwsCallError } from "./errors.ts";
import type { FetchedSecret } from "./resolve.ts";
import { classify, DEFAULT_RETRY, type RetryPolicy, withRetries } from "./retry.ts";

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
  private readonly handler: NodeHttpHandler;
  private readonly agents: [http.Agent, https.Agent];
  private readonly retry: RetryPolicy;

  constructor(private readonly opts: FetcherOptions) {
    // Keep-alive: every call after the first to a region reuses a connection (TLS handshakes cost
    // more than the calls themselves); one socket per call in flight.
    const agentOptions = { keepAlive: true, maxSockets: opts.concurrency };
    this.agents = [new http.Agent(agentOptions), new https.Agent(agentOptions)];
    this.handler = new NodeHttpHandler({
      httpAgent: this.agents[0],
      httpsAgent: this.agents[1],
      connectionTimeout: Math.min(3000, opts.attemptTimeoutMs),
      requestTimeout: opts.attemptTimeoutMs,
      // Without it the SDK only logs a warning when requestTimeout passes, and a hung attempt
      // would use up the whole deadline instead of being retried.
      throwOnRequestTimeout: true,
    });
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
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
      const binary = out.SecretString === undefined && out.SecretBinary !== undefined;
      return {
        secretId: source.secretId,
        ...(out.ARN !== undefined && { arn: out.ARN }),
        ...(out.VersionId !== undefined && { versionId: out.VersionId }),
        ...(out.VersionStages !== undefined && { versionStages: out.VersionStages }),
        value: binary
          ? Buffer.from(out.SecretBinary as Uint8Array)
          : Buffer.from(out.SecretString ?? "", "utf8"),
        binary,
        attempts,
      };
    } catch (e) {
      // AccessDenied is deliberately not "missing", even for optional entries: fail closed. IAM
      // answers AccessDenied for a secret that may well exist, and skipping it would start the pod
      // without a secret it is meant to have, hiding a policy mistake as a silently absent variable.
      if (e instanceof AwsCallError && e.code === MISSING_CODE)
        return { missing: true, code: e.code, message: e.message, attempts: e.attempts };
      throw e;
    }
  }

  destroy(): void {
    for (const c of this.clients.values()) c.destroy();
    this.handler.destroy();
    for (const a of this.agents) a.destroy();
  }
}
