#!/usr/bin/env bash
# Reproduce docs/findings.md from a fresh clone: run the CPU sweeps, write their reports, the laws the verdicts rest on
# and the per-trial rows (onsets, order, slop, window, overestimation) into docs/findings/<sweep>/, then refit every
# law and pooled number from those per-trial CSVs alone and check they agree (tests/test_findings_page.py then holds
# the page's tables to that refit). Measured on the 2-core machine: regime 69 min with nothing else running
# (2026-12-08); tails 75 min likewise; study 47 min; depth 44 min with the test suite
# beside it (2026-12-07; each preset's comment says more).
# A sweep interrupted midway continues where it stopped with the same command (its store is under runs/).
# Arguments are overrides for study and depth (regime and tails always run whole), e.g. one data seed for a quicker
# look:   docs/findings/run.sh 'axes.seed=[0]'   (the committed folders ran every preset whole)
# FINDINGS_SWEEPS (default "regime tails study depth") and FINDINGS_OUT (default docs/findings) pick the sweeps and
# where their files go: `make findings-tiny` runs the whole path on the `tiny` preset in about a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
M=.venv/bin/memsweep
P=.venv/bin/python
OUT=${FINDINGS_OUT:-docs/findings}
for sweep in ${FINDINGS_SWEEPS:-regime tails study depth}; do
  case "$sweep" in regime|tails) over=() ;; *) over=("$@") ;; esac
  $M run "$sweep" ${over[@]+"${over[@]}"} --workers 2 --resume --no-progress
  $M report "runs/$sweep/store" --out "$OUT/$sweep"
  $M fit "runs/$sweep/store" --theta 0.1 --theta 0.5 --theta 0.9 --metric copy_frac --no-nulls \
    --out "$OUT/$sweep/laws_copy_frac.csv"
  $P docs/findings/trials.py "runs/$sweep/store" "$OUT/$sweep/onsets_trials.csv"
  $P docs/findings/window.py "runs/$sweep/store" "$OUT/$sweep"       # arms and the window, every sweep
  $P docs/findings/maxima.py "runs/$sweep/store" "$OUT/$sweep/maxima.csv"
  case "$sweep" in
    regime|tails)
            $P docs/findings/by_p.py "runs/$sweep/store" "$OUT/$sweep/by_p.csv"
            $P docs/findings/window_curves.py "runs/$sweep/store" "$OUT/$sweep/window_curves.png"
            if [ "$sweep" = regime ]; then $P docs/findings/overest.py runs/regime/store "$OUT/regime"; fi ;;
    study)  $M fit runs/study/store --theta 0.1 --theta 0.5 --covariate entropy --covariate entropy_tilt --no-nulls \
              --out "$OUT/study/laws_covariates.csv"
            $P docs/findings/by_p.py runs/study/store "$OUT/study/by_p.csv"
            $P docs/findings/placement.py runs/study/store "$OUT/study/placement.csv" ;;
  esac
done
# every law and pooled number again, from the per-trial CSVs alone; exits 1 where one does not agree
$P docs/findings/refit.py "$OUT" runs/findings-refit ${FINDINGS_SWEEPS:-regime tails study depth}
