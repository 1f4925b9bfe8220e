#!/usr/bin/env bash
# A CI job's promotion step in remote mode: register a candidate, evaluate it next to the
# champion, promote it, and branch on the exit code. The job holds a promoter token, never
# the control plane's database credentials:
#
#   MLCP_API_URL=https://mlcp.internal MLCP_TOKEN=mlcp_... \
#     examples/ci-promote.sh NAME MODEL EXAMPLE TRAIN EVAL LABEL [BUILD_ID]
#
# Exit codes are mlcp's: 0 promoted (or awaiting approval), 1 refused by the gates,
# 2 bad input, 3 internal error, 4 the control plane is unavailable (retry the job later),
# 5 the token may not do this. The gate report is left in $PROMOTION_REPORT.
set -uo pipefail

mlcp=(${MLCP:-mlcp})
name=$1 model=$2 example=$3 train=$4 eval=$5 label=$6
build=${7:-${GITHUB_RUN_ID:-local}}
report=${PROMOTION_REPORT:-promotion.json}

# The same key on a re-run of this job returns the version it registered the first time.
registered=$("${mlcp[@]}" models register "$name" --model "$model" --input-example "$example" \
    --training-data "$train" --label "$label" --idempotency-key "ci-$build-$name")
status=$?
[ "$status" -eq 0 ] || exit "$status"
ref=${registered%% *}  # "churn@7  models:/churn/7  sha256 ..."

"${mlcp[@]}" evaluate "$ref" --data "$eval" --label "$label" || exit

"${mlcp[@]}" promote "$ref" --json >"$report"
status=$?
case $status in
    0) echo "$ref promoted" ;;
    1) echo "$ref refused by its gates; the report is in $report" ;;
    4) echo "the control plane is unavailable; run this job again later" ;;
    5) echo "this token may not promote; give the job a promoter token" ;;
    *) echo "$ref: bad input or an internal error (exit $status)" ;;
esac
exit "$status"
