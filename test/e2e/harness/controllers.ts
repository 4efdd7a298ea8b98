/**
 * What the controller-manager (not running in the test bed) would create for a stored Deployment:
 * the Deployment controller's ReplicaSet (owned by it, the template labelled with pod-template-hash),
 * then the ReplicaSet controller's pod (owned by it, named from generateName), created through the
 * API server, so through the admission webhook. Used by the e2e tests and the demo.
 */
import type {
  AppsV1Api,
  CoreV1Api,
  V1Deployment,
  V1OwnerReference,
  V1Pod,
  V1PodTemplateSpec,
  V1ReplicaSet,
} from "@kubernetes/client-node";

function ownedBy(kind: string, obj: { metadata?: { name?: string; uid?: string } }): V1OwnerReference {
  return {
    apiVersion: "apps/v1",
    kind,
    name: obj.metadata?.name as string,
    uid: obj.metadata?.uid as string,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The ReplicaSet and one pod of `deployment` (as stored: it needs its uid), the pod as stored. */
export async function createDeploymentPod(
  apps: AppsV1Api,
  core: CoreV1Api,
  deployment: V1Deployment,
  hash = "7c9f8d6b5",
): Promise<{ replicaSet: V1ReplicaSet; pod: V1Pod }> {
  const namespace = deployment.metadata?.namespace as string;
  const name = deployment.metadata?.name as string;
  const template = deployment.spec?.template as V1PodTemplateSpec;
  const labels = { ...template.metadata?.labels, "pod-template-hash": hash };
  const replicaSet = await apps.createNamespacedReplicaSet({
    namespace,
    body: {
      metadata: { name: `${name}-${hash}`, labels, ownerReferences: [ownedBy("Deployment", deployment)] },
      spec: {
        replicas: 1,
        selector: {
          matchLabels: { ...deployment.spec?.selector.matchLabels, "pod-template-hash": hash },
        },
        template: { ...template, metadata: { ...template.metadata, labels } },
      },
    },
  });
  const rsTemplate = replicaSet.spec?.template as V1PodTemplateSpec;
  const created = await core.createNamespacedPod({
    namespace,
    body: {
      metadata: {
        ...rsTemplate.metadata,
        generateName: `${name}-${hash}-`,
        ownerReferences: [ownedBy("ReplicaSet", replicaSet)],
      },
      spec: rsTemplate.spec,
    } as V1Pod,
  });
  const pod = await core.readNamespacedPod({ namespace, name: created.metadata?.name as string });
  return { replicaSet, pod };
}
