// `sm-injector fetch`: the init container. Reads the compiled spec from SM_INJECTOR_SPEC, fetches
// each distinct (secret, version) once in parallel, resolves the variables, and writes the output
// atomically. Exit 0 only when every required secret was written; otherwise nothing is written.
import { pino } from "pino";
import { EncodeError, render, renderFiles } from "../envfile/index.ts";
import { FETCH_SPEC_ENV, type FetchSpec, FetchSpecSchema, type SecretSource } from "../spec/fetch-spec.ts";
import { AwsCallError, SecretFetcher } from "./aws.ts";
import { fetchErrorLine, identityFromEnv } from "./errors.ts";
import { type FetchOutcome, resolveVariables, sourceKey } from "./resolve.ts";
import { writeAtomically } from "./write.ts";

export interface FetchIO {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const PREFIX = "sm-injector fetch: ";

function readSpec(env: NodeJS.ProcessEnv): { spec: FetchSpec } | { error: string } {
  const raw = env[FETCH_SPEC_ENV];
  const mismatch =
    "the webhook and the init container image may be different sm-injector versions; use the webhook's own image for the init container";
  if (!raw)
    return {
      error: `${FETCH_SPEC_ENV} is not set: this command runs as the init container the sm-injector webhook injects`,
    };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { error: `${FETCH_SPEC_ENV} is not valid JSON; ${mismatch}` };
  }
  const parsed = FetchSpecSchema.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return {
      error: `${FETCH_SPEC_ENV} does not match this version's schema (${i?.path.join(".") || "spec"}: ${i?.message}); ${mismatch}`,
    };
  }
  return { spec: parsed.data };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function runFetch(io: FetchIO): Promise<number> {
  const started = performance.now();
  const fail = (lines: string[]) => {
    for (const l of lines) io.stderr.write(`${PREFIX}${l}\n`);
  };
  const specResult = readSpec(io.env);
  if ("error" in specResult) {
    fail([specResult.error]);
    return 2;
  }
  const { spec } = specResult;
  const log = pino(
    {
      base: {
        component: "fetch",
        ...(io.env.POD_NAMESPACE && { namespace: io.env.POD_NAMESPACE }),
        ...(io.env.POD_NAME && { pod: io.env.POD_NAME }),
        ...(io.env.POD_SERVICE_ACCOUNT && { serviceAccount: io.env.POD_SERVICE_ACCOUNT }),
      },
      level: io.env.SM_INJECTOR_LOG_LEVEL ?? "info",
    },
    io.stdout,
  );
  const identity = identityFromEnv(io.env);

  // Each distinct (secret, region, version) once.
  const sources = new Map<string, SecretSource>();
  for (const e of spec.entries) sources.set(sourceKey(e.source), e.source);

  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), spec.timeoutSeconds * 1000);
  let apiCalls = 0;
  const fetcher = new SecretFetcher({
    concurrency: spec.concurrency,
    signal: deadline.signal,
    onAttempt: () => apiCalls++,
  });
  const fetched = new Map<string, FetchOutcome>();
  const errors: string[] = [];
  try {
    await mapBounded([...sources.entries()], spec.concurrency, async ([key, source]) => {
      const t0 = performance.now();
      try {
        const r = await fetcher.get(source);
        fetched.set(key, r);
        if ("missing" in r) {
          log.info(
            {
              secretId: source.secretId,
              versionStage: source.versionStage,
              versionId: source.versionId,
              result: "missing",
            },
            "secret not found",
          );
        } else {
          log.info(
            {
              secretId: source.secretId,
              versionId: r.versionId,
              versionStages: r.versionStages,
              bytes: r.value.length,
              attempts: r.attempts,
              durationMs: Math.round(performance.now() - t0),
            },
            "fetched secret",
          );
        }
      } catch (e) {
        const err = e instanceof AwsCallError ? e : new AwsCallError("Error", (e as Error).message, false, 0);
        const code = deadline.signal.aborted ? "DeadlineExceeded" : err.code;
        errors.push(fetchErrorLine(source, code, err.message, identity, spec.timeoutSeconds));
        log.warn(
          { secretId: source.secretId, code, attempts: err.attempts, identity: identity.description },
          "fetch failed",
        );
      }
    });
  } finally {
    clearTimeout(timer);
    fetcher.destroy();
  }
  if (errors.length > 0) {
    fail(errors);
    return 1;
  }

  const resolution = resolveVariables(spec.entries, fetched);
  for (const s of resolution.skipped) log.info({ detail: s }, "optional secret skipped");
  if (resolution.errors.length > 0) {
    fail(resolution.errors);
    return 1;
  }

  let files: { fileName: string; content: Buffer }[];
  try {
    files =
      spec.format === "files"
        ? renderFiles(resolution.vars)
        : [{ fileName: spec.fileName, content: render(spec.format, resolution.vars) }];
  } catch (e) {
    if (e instanceof EncodeError) {
      fail([`${e.message}`]);
      return 1;
    }
    throw e;
  }
  try {
    await writeAtomically(spec.outputDir, files, spec.fileMode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "Error";
    const why =
      code === "ENOENT"
        ? "the output directory does not exist (it is the sm-injector-secrets volume's mount)"
        : code === "EACCES" || code === "EPERM"
          ? "no permission to write there (check the volume and the init container's runAsUser/fsGroup)"
          : code === "ENOSPC"
            ? "the memory volume is full (raise the webhook's --volume-size-limit)"
            : (e as Error).message;
    fail([`cannot write ${spec.outputDir}: ${code} — ${why}`]);
    return 1;
  }

  log.info(
    {
      variables: resolution.vars.length,
      secrets: sources.size,
      format: spec.format,
      output: spec.format === "files" ? spec.outputDir : `${spec.outputDir}/${spec.fileName}`,
      apiCalls,
      durationMs: Math.round(performance.now() - started),
      sinceProcessStartMs: Math.round(performance.now()),
    },
    "secrets written",
  );
  return 0;
}
