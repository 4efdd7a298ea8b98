#!/usr/bin/env bash
# End-to-end test on a real cluster (kind), for machines with Docker. Not run in CI here (no Docker
# engine). `npm run test:kind` runs it.
#
#   1. creates a kind cluster from kind-config.yaml;
#   2. builds the image from the Dockerfile and loads it into the cluster;
#   3. installs charts/sm-injector (namespace enforcing Pod Security "restricted"), runs `helm test`,
#      upgrades and checks the generated certificate was reused (caBundle unchanged);
#   4. runs moto (motoserver/moto) in the cluster as the AWS endpoint and seeds the strategy's example
#      secrets: erp/production/database (JSON with DATABASE_URL) and erp/staging/jwt/secret_key;
#   5. creates the ServiceAccount `api` annotated eks.amazonaws.com/role-arn and a Deployment that opts
#      in, with a projected service-account token for audience sts.amazonaws.com and the AWS_* variables,
#      exactly as the EKS Pod Identity Webhook sets them up (AWS_ENDPOINT_URL points at moto);
#   6. checks from inside the app container that the env file holds the seeded values, that it is on
#      a memory-backed volume, and that no value appears in the pod spec;
#   7. checks failing closed: an opted-in pod naming a missing secret never runs; with the webhook
#      scaled to zero, pods that did not opt in are still created and opted-in ones are refused;
#   8. runs the e2e suite CI runs on the local node (E2E_SUITE) on this cluster, with the same code
#      (SM_INJECTOR_E2E_CLUSTER=kubeconfig; KIND_E2E_SUITE=0 skips it): needs the pinned Node,
#      moto_server and the image tools of scripts/build-images.sh on this machine;
#   9. deletes the cluster (KEEP_CLUSTER=1 keeps it for debugging).
#
# Needs: docker, kind, kubectl; helm (HELM, else helm on PATH, else the pinned one is built with Go).
# Env:   KIND_CLUSTER_NAME (default sm-injector-e2e), KIND_NODE_IMAGE, KEEP_CLUSTER=1,
#        MOTO_IMAGE (default motoserver/moto:5.2.1, the version test/requirements.txt pins).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-sm-injector-e2e}"
IMAGE_REPO=sm-injector
IMAGE_TAG=kind-e2e
IMAGE="${IMAGE_REPO}:${IMAGE_TAG}"
MOTO_IMAGE="${MOTO_IMAGE:-motoserver/moto:5.2.1}"
APP_IMAGE="${APP_IMAGE:-busybox:1.36}"
NS=sm-injector
APP_NS=erp
ROLE_ARN="arn:aws:iam::123456789012:role/erp-api"
MOTO_URL="http://moto.moto.svc.cluster.local:5000"
# The e2e test files that take their cluster from test/e2e/harness/e2e-cluster.ts (step 8).
E2E_SUITE=(test/e2e/real-node-helm.test.ts)
# The seeded values, with characters that a naive env file would mangle. (No "$(" or "$$": the
# Job passes them as Kubernetes env values, which expand those.)
# shellcheck disable=SC2016
DATABASE_URL_VALUE='postgresql://erp:pa$w0rd!"x@db.erp.internal:5432/erp?sslmode=require'
JWT_VALUE="jwt-secret-with 'quotes' and \$dollars"

log() { printf '\n[kind-e2e] %s\n' "$*" >&2; }
die() {
  printf '[kind-e2e] FAILED: %s\n' "$*" >&2
  exit 1
}

for tool in docker kind kubectl; do
  command -v "${tool}" >/dev/null 2>&1 || die "${tool} is required (see the README's kind section)"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
HELM="${HELM:-}"
if [[ -z "${HELM}" ]]; then
  if command -v helm >/dev/null 2>&1; then
    HELM="$(command -v helm)"
  else
    HELM="$(bash "${ROOT}/scripts/build-binaries.sh" helm | tail -n 1)/helm"
  fi
fi

WORK="$(mktemp -d)"
export KUBECONFIG="${WORK}/kubeconfig"
created=false

diagnostics() {
  log "diagnostics"
  kubectl get pods -A -o wide || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 40 || true
  kubectl -n "${NS}" logs -l app.kubernetes.io/name=sm-injector --tail=100 --prefix || true
  kubectl -n "${APP_NS}" describe pods || true
  kubectl -n "${APP_NS}" logs -l app=api -c sm-injector-fetch --tail=50 --prefix || true
}

cleanup() {
  local code=$?
  if [[ ${code} -ne 0 && "${created}" == true ]]; then diagnostics; fi
  if [[ "${created}" == true && "${KEEP_CLUSTER:-0}" != 1 ]]; then
    log "deleting cluster ${CLUSTER}"
    kind delete cluster --name "${CLUSTER}" || true
  elif [[ "${created}" == true ]]; then
    log "kept cluster ${CLUSTER} (KUBECONFIG=${KUBECONFIG}; delete with: kind delete cluster --name ${CLUSTER})"
    return
  fi
  rm -rf "${WORK}"
}
trap cleanup EXIT

# --- 1. cluster -----------------------------------------------------------------------------------
log "creating kind cluster ${CLUSTER}"
node_image=()
if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then node_image=(--image "${KIND_NODE_IMAGE}"); fi
kind create cluster --name "${CLUSTER}" --config "${ROOT}/kind-config.yaml" \
  --kubeconfig "${KUBECONFIG}" --wait 180s "${node_image[@]}"
created=true

# --- 2. image -------------------------------------------------------------------------------------
log "building ${IMAGE}"
docker build -t "${IMAGE}" "${ROOT}"
docker run --rm "${IMAGE}" version
kind load docker-image "${IMAGE}" --name "${CLUSTER}"

# --- 3. chart -------------------------------------------------------------------------------------
log "installing the chart"
kubectl create namespace "${NS}"
kubectl label namespace "${NS}" pod-security.kubernetes.io/enforce=restricted
helm_install() {
  "${HELM}" upgrade --install sm-injector "${ROOT}/charts/sm-injector" --namespace "${NS}" \
    --set image.repository="${IMAGE_REPO}" --set image.tag="${IMAGE_TAG}" --set image.pullPolicy=Never \
    --wait --timeout 5m
}
helm_install
kubectl -n "${NS}" rollout status deploy/sm-injector --timeout=180s
"${HELM}" test sm-injector --namespace "${NS}" --logs --timeout 3m

ca_before="$(kubectl get mutatingwebhookconfiguration sm-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}')"
secret_ca="$(kubectl -n "${NS}" get secret sm-injector-tls -o 'jsonpath={.data.ca\.crt}')"
[[ -n "${ca_before}" && "${ca_before}" == "${secret_ca}" ]] || die "caBundle is not the Secret's ca.crt"
helm_install
ca_after="$(kubectl get mutatingwebhookconfiguration sm-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}')"
[[ "${ca_after}" == "${ca_before}" ]] || die "helm upgrade changed the caBundle (the certificate was not reused)"
log "helm upgrade reused the generated certificate"

# --- 4. moto --------------------------------------------------------------------------------------
log "starting moto (${MOTO_IMAGE}) and seeding the secrets"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: moto
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: moto
  namespace: moto
spec:
  replicas: 1
  selector:
    matchLabels: {app: moto}
  template:
    metadata:
      labels: {app: moto}
    spec:
      containers:
        - name: moto
          image: ${MOTO_IMAGE}
          args: ["-H", "0.0.0.0", "-p", "5000"]
          ports: [{containerPort: 5000}]
          readinessProbe:
            tcpSocket: {port: 5000}
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: moto
  namespace: moto
spec:
  selector: {app: moto}
  ports: [{port: 5000, targetPort: 5000}]
YAML
kubectl -n moto rollout status deploy/moto --timeout=180s

kubectl apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: seed
  namespace: moto
spec:
  backoffLimit: 3
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: seed
          image: ${MOTO_IMAGE}
          command: ["python", "-c"]
          args:
            - |
              import json, os, boto3
              kw = dict(endpoint_url="${MOTO_URL}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
              sm = boto3.client("secretsmanager", **kw)
              sm.create_secret(Name="erp/production/database",
                               SecretString=json.dumps({"DATABASE_URL": os.environ["DATABASE_URL_VALUE"]}))
              sm.create_secret(Name="erp/staging/jwt/secret_key", SecretString=os.environ["JWT_VALUE"])
              trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                       "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/kind"},
                       "Action": "sts:AssumeRoleWithWebIdentity"}]}
              boto3.client("iam", **kw).create_role(RoleName="erp-api",
                                                    AssumeRolePolicyDocument=json.dumps(trust))
              print("seeded")
          env:
            - name: DATABASE_URL_VALUE
              value: $(printf '%s' "${DATABASE_URL_VALUE}" | sed "s/'/''/g; s/.*/'&'/")
            - name: JWT_VALUE
              value: $(printf '%s' "${JWT_VALUE}" | sed "s/'/''/g; s/.*/'&'/")
YAML
kubectl -n moto wait --for=condition=complete job/seed --timeout=180s
kubectl -n moto logs job/seed

# --- 5. the app, as on EKS with IRSA --------------------------------------------------------------
log "deploying an opted-in app with IRSA-style credentials"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: ${APP_NS}
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: ${APP_NS}
  annotations:
    eks.amazonaws.com/role-arn: ${ROLE_ARN}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: ${APP_NS}
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels:
        app: api
        sm-injector.io/inject: "true"
      annotations:
        sm-injector.io/env-from: erp/production/database
        sm-injector.io/env.JWT_SECRET_KEY: erp/staging/jwt/secret_key
    spec:
      serviceAccountName: api
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: api
          image: ${APP_IMAGE}
          command: ["sh", "-c", '. "\$SM_INJECTOR_ENV_FILE" && echo "secrets loaded" && exec sleep 86400']
          env:
            # What the EKS Pod Identity Webhook adds for IRSA, plus the endpoint of moto.
            - {name: AWS_REGION, value: us-east-1}
            - {name: AWS_ROLE_ARN, value: "${ROLE_ARN}"}
            - {name: AWS_WEB_IDENTITY_TOKEN_FILE, value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token}
            - {name: AWS_STS_REGIONAL_ENDPOINTS, value: regional}
            - {name: AWS_ENDPOINT_URL, value: "${MOTO_URL}"}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - name: aws-iam-token
              mountPath: /var/run/secrets/eks.amazonaws.com/serviceaccount
              readOnly: true
      volumes:
        - name: aws-iam-token
          projected:
            sources:
              - serviceAccountToken:
                  audience: sts.amazonaws.com
                  expirationSeconds: 86400
                  path: token
YAML

pod=""
for _ in $(seq 1 60); do
  pod="$(kubectl -n "${APP_NS}" get pods -l app=api -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)"
  [[ -n "${pod}" ]] && break
  sleep 2
done
[[ -n "${pod}" ]] || die "the api pod was not created (was it refused by the webhook? see the events)"
init_env="$(kubectl -n "${APP_NS}" get pod "${pod}" \
  -o 'jsonpath={range .spec.initContainers[?(@.name=="sm-injector-fetch")].env[*]}{.name}{"\n"}{end}')"
[[ -n "${init_env}" ]] || die "the webhook did not inject the sm-injector-fetch init container"
grep -qx AWS_ENDPOINT_URL <<<"${init_env}" ||
  die "the init container has no AWS_ENDPOINT_URL, so it cannot reach moto: the webhook must copy AWS_ENDPOINT_URL* from the app container like the other AWS_* identity variables"
kubectl -n "${APP_NS}" rollout status deploy/api --timeout=180s

# --- 6. checks from inside the app container ------------------------------------------------------
log "checking the env file from inside the app container"
in_app() { kubectl -n "${APP_NS}" exec "${pod}" -c api -- sh -c "$1"; }
# shellcheck disable=SC2016 # expanded by the container's shell
got_db="$(in_app '. "$SM_INJECTOR_ENV_FILE" && printf "%s" "$DATABASE_URL"')"
[[ "${got_db}" == "${DATABASE_URL_VALUE}" ]] || die "DATABASE_URL in the env file is '${got_db}'"
# shellcheck disable=SC2016
got_jwt="$(in_app '. "$SM_INJECTOR_ENV_FILE" && printf "%s" "$JWT_SECRET_KEY"')"
[[ "${got_jwt}" == "${JWT_VALUE}" ]] || die "JWT_SECRET_KEY in the env file is '${got_jwt}'"
in_app 'grep -q " /run/sm-injector tmpfs " /proc/mounts' || die "/run/sm-injector is not memory-backed (tmpfs)"
if kubectl -n "${APP_NS}" get pod "${pod}" -o yaml | grep -qF "db.erp.internal"; then
  die "a secret value appears in the pod spec"
fi
log "the env file holds the seeded values; nothing secret in the pod spec"

# --- 7. failing closed ----------------------------------------------------------------------------
log "an opted-in pod naming a missing secret must not run"
kubectl -n "${APP_NS}" run missing --image="${APP_IMAGE}" --restart=Never \
  --labels=sm-injector.io/inject=true --annotations=sm-injector.io/env.X=erp/production/does-not-exist \
  --overrides='{"spec":{"serviceAccountName":"api","securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"missing","image":"'"${APP_IMAGE}"'","command":["sleep","3600"],"env":[{"name":"AWS_REGION","value":"us-east-1"},{"name":"AWS_ENDPOINT_URL","value":"'"${MOTO_URL}"'"}],"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}'
failed=false
for _ in $(seq 1 45); do
  reason="$(kubectl -n "${APP_NS}" get pod missing -o 'jsonpath={.status.initContainerStatuses[0].state.terminated.exitCode}{.status.initContainerStatuses[0].lastState.terminated.exitCode}')"
  if [[ -n "${reason}" && "${reason}" != 0* ]]; then failed=true; break; fi
  sleep 2
done
[[ "${failed}" == true ]] || die "the fetch of a missing secret did not fail"
[[ "$(kubectl -n "${APP_NS}" get pod missing -o 'jsonpath={.status.phase}')" != Running ]] || die "the pod runs without its secret"
kubectl -n "${APP_NS}" delete pod missing --wait=false

log "webhook down: pods that did not opt in still start; opted-in pods are refused"
kubectl -n "${NS}" scale deploy/sm-injector --replicas=0
kubectl -n "${NS}" wait --for=delete pod -l app.kubernetes.io/name=sm-injector --timeout=120s || true
plain_overrides='{"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"c","image":"'"${APP_IMAGE}"'","command":["sleep","60"],"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}'
kubectl -n "${APP_NS}" run plain --image="${APP_IMAGE}" --restart=Never --overrides="${plain_overrides}" ||
  die "a pod that did not opt in was refused while the webhook was down"
if kubectl -n "${APP_NS}" run optedin --image="${APP_IMAGE}" --restart=Never \
  --labels=sm-injector.io/inject=true --annotations=sm-injector.io/env.X=erp/staging/jwt/secret_key \
  --overrides="${plain_overrides}" 2>"${WORK}/refused.txt"; then
  die "an opted-in pod was created while the webhook was down (failurePolicy must be Fail)"
fi
grep -q "inject.sm-injector.io" "${WORK}/refused.txt" || die "unexpected refusal: $(cat "${WORK}/refused.txt")"
kubectl -n "${NS}" scale deploy/sm-injector --replicas=2
kubectl -n "${NS}" rollout status deploy/sm-injector --timeout=180s

# --- 8. the e2e suite CI runs on the local node, on this cluster -----------------------------------
# Same test files, same assertions: test/e2e/harness/e2e-cluster.ts takes the cluster from
# KUBECONFIG, loads images with `kind load image-archive` (instead of `ctr images import`) and gives
# the pods the kind network's gateway as the host's address (moto runs on this host). The suite
# installs its own release, so this script's goes first.
if [[ "${KIND_E2E_SUITE:-1}" == 1 ]]; then
  log "the shared e2e suite (${E2E_SUITE[*]}) on ${CLUSTER}"
  "${HELM}" uninstall sm-injector --namespace "${NS}" --wait
  kubectl delete namespace "${NS}" "${APP_NS}" --wait=true --timeout=180s
  host_address="$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' |
    tr ' ' '\n' | grep -m1 -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' || true)"
  [[ -n "${host_address}" ]] || die "the kind Docker network has no IPv4 gateway (docker network inspect kind)"
  (
    cd "${ROOT}"
    export SM_INJECTOR_E2E_CLUSTER=kubeconfig SM_INJECTOR_E2E_HOST_ADDRESS="${host_address}"
    export SM_INJECTOR_E2E_LOAD_IMAGE="kind load image-archive --name ${CLUSTER}"
    node --import tsx --test --test-reporter=spec "${E2E_SUITE[@]}"
  ) || die "the shared e2e suite failed on ${CLUSTER}"
fi

log "PASSED"
