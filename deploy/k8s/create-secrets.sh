#!/bin/sh
# Creates the Secrets the manifests reference, with fresh random passwords, in namespace
# ${NAMESPACE:-mlcp}. Run it once, before `kubectl apply -k deploy/k8s`; it refuses to
# overwrite Secrets that exist (the databases keep the passwords they were created with).
# Nothing it makes is written to disk. To use stores of your own (a managed PostgreSQL, S3),
# create the same Secrets by hand with your URLs: see docs/production.md.
set -eu

NAMESPACE=${NAMESPACE:-mlcp}
KUBECTL=${KUBECTL:-kubectl}

# Hex, so the passwords go into URLs without escaping.
random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

pg=$(random)
redis=$(random)
s3_key=$(random)
s3_secret=$(random)

secret() {
  name=$1
  shift
  "$KUBECTL" --namespace "$NAMESPACE" create secret generic "$name" "$@"
}

"$KUBECTL" get namespace "$NAMESPACE" >/dev/null 2>&1 || "$KUBECTL" create namespace "$NAMESPACE"

secret mlcp-postgres --from-literal=password="$pg"
secret mlcp-redis --from-literal=password="$redis"
secret mlcp-object-store --from-literal=access-key="$s3_key" --from-literal=secret-key="$s3_secret"
secret mlcp-mlflow \
  --from-literal=backend-store-uri="postgresql+psycopg://mlcp:$pg@mlcp-postgres:5432/mlflow"
secret mlcp-settings-secret \
  --from-literal=MLCP_DATABASE_URL="postgresql://mlcp:$pg@mlcp-postgres:5432/mlcp" \
  --from-literal=MLCP_FEAST_REGISTRY="postgresql://mlcp:$pg@mlcp-postgres:5432/feast" \
  --from-literal=MLCP_FEAST_ONLINE_STORE="redis://:$redis@mlcp-redis:6379/0"

echo "created the secrets mlcp-postgres, mlcp-redis, mlcp-object-store, mlcp-mlflow and" \
  "mlcp-settings-secret in namespace $NAMESPACE" >&2
