// `sm-injector fetch`: the init container. Reads the compiled spec from SM_INJECTOR_SPEC, fetches
// each distinct (secret, region, version) once, in parallel up to spec.concurrency, resolves the
// variables and writes the output atomically. Exit 0 only when every required secret was written;
// otherwise exit 1 (2 for a bad spec), nothing written, one line per problem on stderr.
//
// io.env is where the spec and the pod's names come from. The AWS SDK reads its own settings
// (credentials chain, AWS_REGION, AWS_ENDPOINT_URL*) from process.env, as it does in every AWS
// tool; in the init container the two are the same object.
import { type Logger, pino } from "pino";
import {
  describeIssue,
  entrySources,
  FETCH_SPEC_ENV,
  type FetchSpec,
  FetchSpecSchema,
  type SecretSource,
  sourceKey,
} from "../contract/fetch-spec.ts";
import {
  DEFAULT_TERMINATION_LOG,
  encodeVersions,
  TERMINATION_LOG_ENV,
  type VersionRecord,
} from "../contract/fetched-versions.ts";
import { outputPath } from "../contract/paths.ts";
import {
  EncodeError,
  type EnvVar,
  render,
  renderFiles,
  shellRefusal,
  shellRefusalMessage,
} from "../envfile/index.ts";
import { type BatchResult, type FetcherOptions, planCalls, SecretFetcher } from "./aws.ts";
import { forEachBounded } from "./bounded.ts";
import {
  AwsCallError,
  callErrorLine,
  callProblem,
  credentialsErrorLine,
  encodeProblem,
  identityFromEnv,
  internalErrorProblem,
  type ProblemContext,
  specProblem,
  terminationText,
  writeProblem,
} from "./errors.ts";
import { type FetchedSecret, type FetchOutcome, type Resolution, resolveVariables } from "./resolve.ts";
import { roleSessionName } from "./session-name.ts";
import { type OutputFile, writeAtomically, writeTerminationMessage } from "./write.ts";

export interface FetchIO {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Only for the start-up snapshot's warm-up (see FetcherOptions.clientConfig). */
  clientConfig?: FetcherOptions["clientConfig"];
}

const PREFIX = "sm-injector fetch: ";
const VERSION_SKEW =
  "the webhook and this init container may be different sm-injector versions (the init container should use the webhook's own image)";

function readSpec(env: NodeJS.ProcessEnv): { spec: FetchSpec } | { error: string } {
  const raw = env[FETCH_SPEC_ENV];
  if (!raw)
    return {
      error: specProblem(
        "spec-missing",
        `${FETCH_SPEC_ENV} is not set: this command runs as the init container that the sm-injector webhook injects, which sets it; if the webhook did inject it, ${VERSION_SKEW}`,
      ),
    };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { error: specProblem("spec-invalid", `${FETCH_SPEC_ENV} is not valid JSON; ${VERSION_SKEW}`) };
  }
  const parsed = FetchSpecSchema.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return {
      error: specProblem(
        "spec-invalid",
        `${FETCH_SPEC_ENV} does not match this version's schema (${i ? describeIssue(i) : "spec"}); ${VERSION_SKEW}`,
      ),
    };
  }
  return { spec: parsed.data };
}

/**
 * Writes which version each movable reference (a stage, not a pinned version id) resolved to into
 * the termination message file, for the rotation controller to read from the pod's status. Only
 * when the file exists (the kubelet creates it; elsewhere, e.g. a local run, there is nothing to
 * do). Returns whether it was written; a failure here never fails the fetch.
 */
function recordVersions(
  file: string,
  sources: readonly SecretSource[],
  fetched: ReadonlyMap<string, FetchOutcome>,
  defaultRegion: string | undefined,
  limit: number,
): boolean {
  const records: VersionRecord[] = [];
  for (const s of sources) {
    const r = fetched.get(sourceKey(s));
    if (s.versionId !== undefined || !r || !("value" in r) || r.versionId === undefined) continue;
    records.push({
      secretId: s.secretId,
      region: s.region ?? defaultRegion ?? "",
      stage: s.versionStage ?? "AWSCURRENT",
      versionId: r.versionId,
    });
  }
  // Never created here: only the kubelet's file.
  return writeTerminationMessage(file, encodeVersions(records, limit));
}

/**
 * Every variable a shell would not set exactly (UID, RANDOM, ...), at once, each naming where it
 * comes from; renderShellEnv refuses them too, one at a time.
 */
function shellNameProblems(vars: readonly EnvVar[], origins: ReadonlyMap<string, string>): string[] {
  const lines: string[] = [];
  for (const { name } of vars) {
    const reason = shellRefusal(name);
    if (reason === undefined) continue;
    const origin = origins.get(name);
    lines.push(encodeProblem(origin, "shell", shellRefusalMessage(name, reason)));
  }
  return lines;
}

/**
 * Runs the init container. Never throws: an unexpected exception is one line naming its type, with
 * its message cleaned and capped, and exit 1 (a parser's message, which quotes its input, is not shown).
 */
export async function runFetch(io: FetchIO): Promise<number> {
  try {
    return await fetchAndWrite(io);
  } catch (e) {
    io.stderr.write(`${PREFIX}${internalErrorProblem(e)}\n`);
    return 1;
  }
}

/** What one run carries from stage to stage: the spec, the log, the identity and the call count. */
interface Run {
  readonly io: FetchIO;
  readonly spec: FetchSpec;
  readonly log: Logger;
  readonly ctx: ProblemContext;
  /** The STS role session name the pod's IRSA credentials are requested with (names the pod in CloudTrail). */
  readonly sessionName: string | undefined;
  readonly output: string;
  readonly started: number;
  apiCalls: number;
}

/** The init container's stages: spec → plan → fetch → resolve (templates rendered) → encode → write. */
async function fetchAndWrite(io: FetchIO): Promise<number> {
  const started = performance.now();
  const specResult = readSpec(io.env);
  if ("error" in specResult) {
    printProblems(io, [specResult.error]);
    return 2;
  }
  const run = startRun(io, specResult.spec, started);
  const sources = planSources(run.spec);
  const { fetched, problems } = await fetchAll(run, sources);

  // Resolved even when some fetches failed, so that one run reports every problem.
  const resolution = resolveVariables(run.spec.entries, fetched);
  for (const s of resolution.skipped) run.log.info({ detail: s }, "optional secret skipped");
  problems.push(...resolution.errors);
  if (run.spec.format === "shell") problems.push(...shellNameProblems(resolution.vars, resolution.origins));
  if (problems.length > 0) return finish(run, problems);

  const files = encodeOutput(run.spec, resolution);
  if ("problem" in files) return finish(run, [files.problem]);
  try {
    writeAtomically(run.spec.outputDir, files.files, run.spec.fileMode);
  } catch (e) {
    return finish(run, [writeProblem(e, run.spec.outputDir)]);
  }
  reportWritten(run, sources, fetched, resolution);
  return 0;
}

function printProblems(io: FetchIO, lines: readonly string[]): void {
  for (const l of lines) io.stderr.write(`${PREFIX}${l}\n`);
}

function startRun(io: FetchIO, spec: FetchSpec, started: number): Run {
  const sessionName = roleSessionName(io.env);
  const log = pino(
    {
      base: {
        component: "fetch",
        ...(io.env.POD_NAMESPACE && { namespace: io.env.POD_NAMESPACE }),
        ...(io.env.POD_NAME && { pod: io.env.POD_NAME }),
        ...(io.env.POD_SERVICE_ACCOUNT && { serviceAccount: io.env.POD_SERVICE_ACCOUNT }),
        ...(sessionName && { roleSessionName: sessionName }),
      },
      level: io.env.SM_INJECTOR_LOG_LEVEL ?? "info",
    },
    io.stdout,
  );
  const ctx: ProblemContext = {
    identity: identityFromEnv(io.env),
    timeoutSeconds: spec.timeoutSeconds,
    defaultRegion: io.env.AWS_REGION ?? io.env.AWS_DEFAULT_REGION,
  };
  return { io, spec, log, ctx, sessionName, output: outputPath(spec), started, apiCalls: 0 };
}

/**
 * Nothing written: every problem on stderr (once each) and in the termination message (the pod's
 * status), and one log line. Exit code 1.
 */
function finish(run: Run, lines: readonly string[]): number {
  const problems = [...new Set(lines)]; // two entries on one missing secret: one line
  printProblems(run.io, problems);
  writeTerminationMessage(
    run.io.env[TERMINATION_LOG_ENV] ?? DEFAULT_TERMINATION_LOG,
    terminationText(problems, run.spec.messageBytes),
  );
  run.log.error(
    {
      problems,
      output: run.output,
      apiCalls: run.apiCalls,
      identity: run.ctx.identity.description,
      durationMs: Math.round(performance.now() - run.started),
    },
    "fetch failed; nothing written",
  );
  return 1;
}

/** Plan: each distinct (secret, region, version) once, however many entries and placeholders read it. */
function planSources(spec: FetchSpec): SecretSource[] {
  const sources = new Map<string, SecretSource>();
  for (const e of spec.entries) for (const s of entrySources(e)) sources.set(sourceKey(s), s);
  return [...sources.values()];
}

/** Where the fetch stage collects outcomes and problems. */
interface FetchState {
  readonly run: Run;
  readonly fetcher: SecretFetcher;
  readonly deadline: AbortSignal;
  readonly fetched: Map<string, FetchOutcome>;
  readonly problems: string[];
  /** A region without credentials is one problem, however many secrets it holds. */
  readonly noCredentials: Map<string, { region: string | undefined; err: AwsCallError; secrets: string[] }>;
  /** Secrets a batch did not return, read afterwards with GetSecretValue. */
  readonly later: SecretSource[];
}

/** Fetch: every source within the deadline, at most spec.concurrency calls in flight. */
async function fetchAll(
  run: Run,
  sources: readonly SecretSource[],
): Promise<{ fetched: Map<string, FetchOutcome>; problems: string[] }> {
  const { spec } = run;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), spec.timeoutSeconds * 1000);
  const fetcher = new SecretFetcher({
    concurrency: spec.concurrency,
    signal: deadline.signal,
    onAttempt: () => run.apiCalls++,
    // A third of the deadline, at most 5 s: a hung attempt leaves time for at least two more.
    attemptTimeoutMs: Math.min(5000, Math.round((spec.timeoutSeconds * 1000) / 3)),
    roleSessionName: run.sessionName,
    clientConfig: run.io.clientConfig,
  });
  const state: FetchState = {
    run,
    fetcher,
    deadline: deadline.signal,
    fetched: new Map(),
    problems: [],
    noCredentials: new Map(),
    later: [],
  };
  try {
    const plan = spec.batch ? planCalls([...sources]) : { batches: [], singles: [...sources] };
    const calls = [
      ...plan.batches.map((b) => () => fetchBatch(state, b)),
      ...plan.singles.map((s) => () => fetchOne(state, s)),
    ];
    await forEachBounded(calls, spec.concurrency, (call) => call());
    // Never more than spec.concurrency calls in flight: the fallback runs after the batches.
    await forEachBounded(state.later, spec.concurrency, (s) => fetchOne(state, s));
  } finally {
    clearTimeout(timer);
    fetcher.destroy();
  }
  for (const g of state.noCredentials.values())
    state.problems.push(credentialsErrorLine(g.region, g.secrets, g.err, run.ctx));
  return { fetched: state.fetched, problems: state.problems };
}

function asCallError(e: unknown): AwsCallError {
  return e instanceof AwsCallError
    ? e
    : new AwsCallError("Error", (e as Error)?.message ?? String(e), "call", 0);
}

function failed(state: FetchState, source: SecretSource, err: AwsCallError): void {
  if (err.phase === "credentials") {
    const r = source.region ?? "";
    const group = state.noCredentials.get(r) ?? { region: source.region, err, secrets: [] };
    group.secrets.push(source.secretId);
    state.noCredentials.set(r, group);
  } else {
    state.problems.push(callErrorLine(source, err, state.run.ctx));
  }
  state.fetched.set(sourceKey(source), { failed: true });
}

function logFetched(
  run: Run,
  r: FetchedSecret,
  api: "GetSecretValue" | "BatchGetSecretValue",
  attempts: number,
  t0: number,
): void {
  run.log.info(
    {
      secretId: r.secretId,
      versionId: r.versionId,
      versionStages: r.versionStages,
      bytes: r.value.length,
      api,
      attempts,
      durationMs: Math.round(performance.now() - t0),
    },
    "fetched secret",
  );
}

async function fetchOne(state: FetchState, source: SecretSource): Promise<void> {
  const t0 = performance.now();
  try {
    const r = await state.fetcher.get(source);
    if ("missing" in r) {
      const err = new AwsCallError(r.code, r.message, "call", r.attempts);
      state.fetched.set(sourceKey(source), {
        missing: true,
        reason: callProblem(source, err, state.run.ctx),
      });
      return;
    }
    state.fetched.set(sourceKey(source), r);
    logFetched(state.run, r, "GetSecretValue", r.attempts, t0);
  } catch (e) {
    failed(state, source, asCallError(e));
  }
}

/**
 * With spec.batch, up to 20 secrets of a region in one BatchGetSecretValue. What it does not
 * return (a missing secret, one the role may not read), and everything when the call fails, is
 * read afterwards with GetSecretValue, whose error is the one reported.
 */
async function fetchBatch(state: FetchState, batch: SecretSource[]): Promise<void> {
  const t0 = performance.now();
  let result: BatchResult;
  try {
    result = await state.fetcher.getBatch(batch);
  } catch (e) {
    const err = asCallError(e);
    if (err.phase === "credentials" || state.deadline.aborted) {
      for (const s of batch) failed(state, s, err);
      return;
    }
    state.run.log.info(
      {
        region: batch[0]?.region ?? state.run.ctx.defaultRegion,
        secrets: batch.length,
        code: err.code,
        hint: err.code.startsWith("AccessDenied")
          ? 'allow secretsmanager:BatchGetSecretValue (Resource "*") to the role, or run the webhook without --batch-get-secret-value'
          : undefined,
      },
      "BatchGetSecretValue failed; reading these secrets one by one",
    );
    state.later.push(...batch);
    return;
  }
  for (const s of batch) {
    const r = result.fetched.get(s.secretId);
    if (!r) {
      state.later.push(s);
      continue;
    }
    state.fetched.set(sourceKey(s), r);
    logFetched(state.run, r, "BatchGetSecretValue", result.attempts, t0);
  }
}

/** Encode: the variables in the spec's format (one file, or one per variable); a value it cannot write is a problem. */
function encodeOutput(
  spec: FetchSpec,
  resolution: Resolution,
): { files: OutputFile[] } | { problem: string } {
  try {
    return {
      files:
        spec.format === "files"
          ? renderFiles(resolution.vars)
          : [{ fileName: spec.fileName, content: render(spec.format, resolution.vars) }],
    };
  } catch (e) {
    if (!(e instanceof EncodeError)) throw e;
    const origin = resolution.origins.get(e.variable);
    return { problem: encodeProblem(origin, spec.format, e.message) };
  }
}

/** After the write: the versions for the rotation controller, and the run's one success line. */
function reportWritten(
  run: Run,
  sources: readonly SecretSource[],
  fetched: ReadonlyMap<string, FetchOutcome>,
  resolution: Resolution,
): void {
  const recorded = recordVersions(
    run.io.env[TERMINATION_LOG_ENV] ?? DEFAULT_TERMINATION_LOG,
    sources,
    fetched,
    run.ctx.defaultRegion,
    run.spec.messageBytes,
  );
  run.log.info(
    {
      variables: resolution.vars.length,
      secrets: sources.length,
      skipped: resolution.skipped.length,
      format: run.spec.format,
      output: run.output,
      apiCalls: run.apiCalls,
      versionsRecorded: recorded,
      durationMs: Math.round(performance.now() - run.started),
      // performance.now() counts from process start: the whole cost a pod start pays for us.
      sinceProcessStartMs: Math.round(performance.now()),
    },
    "secrets written",
  );
}
