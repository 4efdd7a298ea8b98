// The e2e suite takes its cluster from the environment (test/e2e/harness/e2e-cluster.ts): the local
// real node by default, or a kubeconfig cluster (kind) with its image loader and host address.
import assert from "node:assert/strict";
import { test } from "node:test";
import { clusterSettings } from "../e2e/harness/e2e-cluster.ts";

test("the local real node by default", () => {
  assert.deepEqual(clusterSettings({}), { kind: "local" });
  assert.deepEqual(clusterSettings({ SM_INJECTOR_E2E_CLUSTER: "local", KUBECONFIG: "/x" }), {
    kind: "local",
  });
});

test("a kubeconfig cluster: its kubeconfig, the image loader's argv (the archive is appended) and the host address", () => {
  assert.deepEqual(
    clusterSettings({
      SM_INJECTOR_E2E_CLUSTER: "kubeconfig",
      KUBECONFIG: "/work/kubeconfig",
      SM_INJECTOR_E2E_LOAD_IMAGE: "kind load image-archive  --name sm-injector-e2e",
      SM_INJECTOR_E2E_HOST_ADDRESS: "172.18.0.1",
    }),
    {
      kind: "kubeconfig",
      kubeconfig: "/work/kubeconfig",
      loadImage: ["kind", "load", "image-archive", "--name", "sm-injector-e2e"],
      hostAddress: "172.18.0.1",
    },
  );
});

test("a kubeconfig cluster without its settings, or an unknown kind, is a clear error", () => {
  assert.throws(
    () => clusterSettings({ SM_INJECTOR_E2E_CLUSTER: "kubeconfig", KUBECONFIG: "/k" }),
    /needs SM_INJECTOR_E2E_LOAD_IMAGE, SM_INJECTOR_E2E_HOST_ADDRESS \(e\.g\./,
  );
  assert.throws(
    () => clusterSettings({ SM_INJECTOR_E2E_CLUSTER: "kind" }),
    /use local \(the default\) or kubeconfig/,
  );
});
