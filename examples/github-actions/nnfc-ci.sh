#!/usr/bin/env bash
# The steps of nnfc-bench.yml, runnable on a laptop in the same order:
#
#   nnfc-ci.sh profile  TARGET     measure the target's predictor once per factory (cached in CI)
#   nnfc-ci.sh compile  TARGET     compile every scenario of scenarios.txt for TARGET into out/
#   nnfc-ci.sh bench    TARGET     bench out/* against baseline/bench.json (when there), with the
#                                  factory's metric; writes out/bench.json, junit.xml, summary.md;
#                                  exits 1 on a significant regression beyond the thresholds
#   nnfc-ci.sh baseline            (main only) make out/ the baseline: baseline/ <- out/
#   nnfc-ci.sh trend               (main only) add out/bench.json to history/, plot the trend
#
# Environment: NNFC (the nnfc command, default .venv/bin/nnfc), BUNDLE (default
# factories/numvqa-resnet, whose tasks scenarios.txt names), MAX_REGRESSION (default lat=5%,mem=1%,acc=1pt), SUBNETS (profiling).
set -euo pipefail
NNFC=${NNFC:-.venv/bin/nnfc}
BUNDLE=${BUNDLE:-factories/numvqa-resnet}
MAX_REGRESSION=${MAX_REGRESSION:-lat=5%,mem=1%,acc=1pt}
SCENARIOS=${SCENARIOS:-$(dirname "$0")/scenarios.txt}
OUT=${OUT:-out} BASELINE=${BASELINE:-baseline} HISTORY=${HISTORY:-history}

scenarios() {  # the scenario lines for target $1
  grep -v '^\s*#' "$SCENARIOS" | awk -v t="$1" 'NF >= 5 && $2 == t'
}

case "${1:-}" in
  profile)
    if [ ! -f "$BUNDLE/profiles/$2.json" ]; then
      $NNFC profile --bundle "$BUNDLE" --target "$2" --subnets "${SUBNETS:-60}"
    fi ;;
  compile)
    mkdir -p "$OUT"
    scenarios "$2" | while read -r name target task lat mem; do
      flags=()
      [ "$lat" != - ] && flags+=(--lat "$lat")
      [ "$mem" != - ] && flags+=(--mem "$mem")
      echo "::group::compile $name"
      $NNFC compile --bundle "$BUNDLE" --target "$target" --task "$task" "${flags[@]}" \
        -o "$OUT/$name"
      echo "::endgroup::"
    done ;;
  bench)
    dirs=()
    while read -r name _; do dirs+=("$OUT/$name"); done < <(scenarios "$2")
    baseline=()
    if [ -f "$BASELINE/bench.json" ]; then
      baseline=(--baseline "$BASELINE/bench.json" --max-regression "$MAX_REGRESSION")
    else
      echo "no baseline from main yet ($BASELINE/bench.json): measuring only"
    fi
    $NNFC bench "${dirs[@]}" --eval "${baseline[@]}" --save "$OUT/bench.json" \
      --junit "$OUT/junit.xml" --markdown "$OUT/summary.md" ;;
  baseline)
    [ -f "$OUT/bench.json" ] || { echo "no $OUT/bench.json: run the bench step first" >&2; exit 1; }
    rm -rf "$BASELINE.new" && cp -r "$OUT" "$BASELINE.new"
    rm -rf "$BASELINE" && mv "$BASELINE.new" "$BASELINE" ;;
  trend)
    mkdir -p "$HISTORY"
    cp "$OUT/bench.json" "$HISTORY/$(date -u +%Y%m%dT%H%M%S)-${GITHUB_SHA:-local}.json"
    ls "$HISTORY"/*.json | sort | head -n -20 | xargs -r rm --   # keep the last 20 runs
    $NNFC bench --trend $(ls "$HISTORY"/*.json | sort) --plot "$OUT/trend.png" ;;
  *)
    sed -n '2,14p' "$0"; exit 2 ;;
esac
