#!/usr/bin/env bash
# Reproduce docs/findings.md from a fresh clone: run the three CPU sweeps, write their reports and the laws the
# verdicts rest on into docs/findings/<sweep>/. About 2.5 hours on a 2-core machine (`make findings`);
# 1 hour 40 minutes with one data seed (measured: regime 49, study 35, depth 17 min).
# Those runs trained one eager trial at a time; the presets now train compiled packs (issue 21), an estimated
# ~1.5 hours in all (new trial ids: a store of the earlier runs is not resumed). To reproduce the measured runs,
# pass `pack.size=1 train.compile=off` (and to regime too, by hand).
# A sweep interrupted midway continues where it stopped with the same command (its store is under runs/).
# Arguments are overrides for study and depth (regime always runs whole); the committed page used one data seed:
#   docs/findings/run.sh 'axes.seed=[0]'
set -euo pipefail
cd "$(dirname "$0")/../.."
M=.venv/bin/memsweep
for sweep in regime study depth; do
  if [ "$sweep" = regime ]; then over=(); else over=("$@"); fi
  $M run "$sweep" ${over[@]+"${over[@]}"} --workers 2 --resume --no-progress
  $M report "runs/$sweep/store" --out "docs/findings/$sweep"
  $M fit "runs/$sweep/store" --theta 0.1 --theta 0.5 --theta 0.9 --metric copy_frac \
    --out "docs/findings/$sweep/laws_copy_frac.csv"
done
$M fit runs/study/store --theta 0.1 --theta 0.5 --covariate entropy --covariate entropy_tilt \
  --out docs/findings/study/laws_covariates.csv
P=.venv/bin/python
$P docs/findings/by_p.py runs/regime/store docs/findings/regime/by_p.csv
$P docs/findings/maxima.py runs/regime/store docs/findings/regime/maxima.csv
$P docs/findings/by_p.py runs/study/store docs/findings/study/by_p.csv
$P docs/findings/placement.py runs/study/store docs/findings/study/placement.csv
