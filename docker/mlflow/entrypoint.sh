#!/bin/sh
# MLflow tracking server: PostgreSQL backend store, artifacts proxied to S3 (--serve-artifacts).
# MLFLOW_BACKEND_STORE_URI and MLFLOW_ARTIFACTS_DESTINATION come from the Helm chart
# (Secret / values); S3 credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
# MLFLOW_S3_ENDPOINT_URL. MLFLOW_HOST (default 0.0.0.0, every pod interface), MLFLOW_PORT and
# MLFLOW_WORKERS are read by `mlflow server` itself.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (SQLAlchemy PostgreSQL URL)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://<bucket>/mlflow)}"
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  "$@"
