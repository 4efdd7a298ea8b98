#!/usr/bin/env bash
# TLS for the plain manifests (manifests/sm-injector.yaml, or the chart with tls.mode=manual):
# creates a private CA and a serving certificate for the webhook's Service with openssl, stores
# them in the Secret the webhook pods mount (type kubernetes.io/tls: tls.crt, tls.key, ca.crt) and
# sets the caBundle of every webhook in the MutatingWebhookConfiguration.
#
# Idempotent: when the Secret already exists, its CA is reused and only the caBundle is (re)set;
# --force generates a new CA and certificate (the webhook pods reload the files within about a
# minute; until then opted-in pod creations may be refused and are retried by their controllers).
#
# Usage: scripts/gen-webhook-certs.sh [--namespace NS] [--service NAME] [--secret NAME]
#                                     [--webhook-config NAME] [--days N] [--force]
# Defaults: namespace sm-injector, service sm-injector, secret <service>-tls,
#           webhook-config <service>, 3650 days.
# Needs: openssl, kubectl (KUBECTL to override; the current kubeconfig context is used).
set -euo pipefail

NAMESPACE=sm-injector
SERVICE=sm-injector
SECRET=""
WEBHOOK_CONFIG=""
DAYS=3650
FORCE=false
KUBECTL="${KUBECTL:-kubectl}"

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() {
  printf 'gen-webhook-certs: %s\n' "$*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace) NAMESPACE="${2:?--namespace needs a value}"; shift 2 ;;
    --service) SERVICE="${2:?--service needs a value}"; shift 2 ;;
    --secret) SECRET="${2:?--secret needs a value}"; shift 2 ;;
    --webhook-config) WEBHOOK_CONFIG="${2:?--webhook-config needs a value}"; shift 2 ;;
    --days) DAYS="${2:?--days needs a value}"; shift 2 ;;
    --force) FORCE=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
SECRET="${SECRET:-${SERVICE}-tls}"
WEBHOOK_CONFIG="${WEBHOOK_CONFIG:-${SERVICE}}"
[[ "${DAYS}" =~ ^[0-9]+$ ]] || die "--days must be a number of days"

command -v openssl >/dev/null 2>&1 || die "openssl was not found on PATH"
command -v "${KUBECTL}" >/dev/null 2>&1 || die "${KUBECTL} was not found on PATH"

"${KUBECTL}" get mutatingwebhookconfiguration "${WEBHOOK_CONFIG}" >/dev/null ||
  die "MutatingWebhookConfiguration ${WEBHOOK_CONFIG} not found: apply the manifests first"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
umask 077

b64() { base64 | tr -d '\n'; }

ca_b64=""
if [[ "${FORCE}" != true ]]; then
  ca_b64="$("${KUBECTL}" -n "${NAMESPACE}" get secret "${SECRET}" -o 'jsonpath={.data.ca\.crt}' 2>/dev/null || true)"
  if [[ -n "${ca_b64}" ]]; then
    echo "Secret ${NAMESPACE}/${SECRET} exists: reusing its CA (--force to generate new certificates)" >&2
  fi
fi

if [[ -z "${ca_b64}" ]]; then
  dns="${SERVICE}.${NAMESPACE}.svc"
  echo "generating a CA and a certificate for ${dns} (valid ${DAYS} days)" >&2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -days "${DAYS}" -subj "/CN=${SERVICE}-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -addext "subjectKeyIdentifier=hash" \
    -keyout "${work}/ca.key" -out "${work}/ca.crt" 2>/dev/null
  cat >"${work}/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
authorityKeyIdentifier=keyid
subjectAltName=DNS:${SERVICE},DNS:${SERVICE}.${NAMESPACE},DNS:${dns},DNS:${dns}.cluster.local
EXT
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=${dns}" -keyout "${work}/tls.key" -out "${work}/tls.csr" 2>/dev/null
  openssl x509 -req -sha256 -days "${DAYS}" -in "${work}/tls.csr" \
    -CA "${work}/ca.crt" -CAkey "${work}/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "${work}/server.ext" -out "${work}/tls.crt" 2>/dev/null
  # Only the CA certificate is kept (in the Secret, for clients); its private key is discarded, so
  # nobody can sign another certificate this caBundle trusts.
  "${KUBECTL}" -n "${NAMESPACE}" create secret generic "${SECRET}" --type=kubernetes.io/tls \
    --from-file=tls.crt="${work}/tls.crt" --from-file=tls.key="${work}/tls.key" \
    --from-file=ca.crt="${work}/ca.crt" --dry-run=client -o yaml |
    "${KUBECTL}" label --local -f - -o yaml app.kubernetes.io/name="${SERVICE}" app.kubernetes.io/component=webhook-tls |
    "${KUBECTL}" apply -f - >/dev/null
  echo "stored the certificate in Secret ${NAMESPACE}/${SECRET}" >&2
  ca_b64="$(b64 <"${work}/ca.crt")"
fi

count="$("${KUBECTL}" get mutatingwebhookconfiguration "${WEBHOOK_CONFIG}" -o 'jsonpath={range .webhooks[*]}x{end}')"
patch="["
for ((i = 0; i < ${#count}; i++)); do
  if [[ ${i} -gt 0 ]]; then patch+=","; fi
  patch+="{\"op\":\"add\",\"path\":\"/webhooks/${i}/clientConfig/caBundle\",\"value\":\"${ca_b64}\"}"
done
patch+="]"
"${KUBECTL}" patch mutatingwebhookconfiguration "${WEBHOOK_CONFIG}" --type=json -p "${patch}" >/dev/null
echo "set the caBundle of MutatingWebhookConfiguration ${WEBHOOK_CONFIG} (${#count} webhook(s))" >&2
