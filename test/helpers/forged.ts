// What a hostile tenant hand-writes to look injected: an SM_INJECTOR_SPEC of this release's shape
// that reads `secrets` (another team's, typically) into V0, V1, … Shared by the unit, e2e and bench
// cases that check such claims are never trusted.

/** The JSON of a well-formed FetchSpec reading each of `secrets` (in `region`) into a variable of its own. */
export function forgedFetchSpec(
  secrets: readonly string[],
  region: string,
  env = (i: number) => `V${i}`,
): string {
  return JSON.stringify({
    version: 1,
    format: "shell",
    outputDir: "/run/sm-injector",
    fileName: "env",
    fileMode: 0o444,
    timeoutSeconds: 60,
    entries: secrets.map((secretId, i) => ({ kind: "value", source: { secretId, region }, env: env(i) })),
  });
}

/**
 * The status of an init container named `name` that exited 0 with `message` as its termination
 * message: what the kubelet reports for a completed `sm-injector fetch` (or what a tenant writes to
 * claim one).
 */
export function completedInitStatus(name: string, message: string) {
  return {
    name,
    image: "x",
    imageID: "",
    ready: false,
    restartCount: 0,
    state: { terminated: { exitCode: 0, reason: "Completed", message } },
  };
}
