// `report` and `rotation` read a kubeconfig through @kubernetes/client-node: an unusable one is
// named with the flag to fix, and no command that loads that client prints a deprecation warning.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CLI, runWithInput } from "../helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "sm-kubeconfig-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const empty = join(dir, "empty");
writeFileSync(empty, "");
// A real kubeconfig whose server refuses connections: the command gets as far as the API.
const refused = join(dir, "refused");
writeFileSync(
  refused,
  `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`,
);

for (const command of [["report"], ["rotation", "--once"]]) {
  test(`${command[0]}: an empty kubeconfig is named, with the flag to fix`, async () => {
    const r = await runWithInput(process.execPath, [CLI, ...command, "--kubeconfig", empty]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`cannot use ${empty}: it is not a kubeconfig \\(check --kubeconfig\\)`),
    );
    assert.doesNotMatch(r.stderr, /Cannot read properties/);
  });

  test(`${command[0]}: a missing kubeconfig is named`, async () => {
    const r = await runWithInput(process.execPath, [CLI, ...command, "--kubeconfig", join(dir, "nope")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot use .*nope: ENOENT/);
  });

  test(`${command[0]}: loading the Kubernetes client prints no deprecation warning`, async () => {
    const r = await runWithInput(process.execPath, [CLI, ...command, "--kubeconfig", refused]);
    assert.match(r.stderr + r.stdout, /ECONNREFUSED/, "it reached the (refusing) API server");
    assert.doesNotMatch(r.stderr, /DeprecationWarning|DEP0\d+/);
  });
}
