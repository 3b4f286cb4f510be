#!/usr/bin/env bash
# Install into .venv and run the main job end to end on generated data (README command 1):
# generate training and test declarations, train, score, evaluate, explain the top one,
# and write the HTML risk report. Changes nothing outside this folder.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
setup_venv report
D=.venv/bin/detector
mkdir -p out models
step "generating 200,000 training declarations -> out/train.csv"
$D generate --rows 200000 --seed 1 -o out/train.csv --force >/dev/null
step "generating 100,000 test declarations -> out/test.csv"
$D generate --rows 100000 --seed 2 -o out/test.csv --force >/dev/null
step "training -> models/detector.joblib (lanes red 1%, yellow 4%; 0.5% at random)"
$D train out/train.csv -o models/detector.joblib --lanes red=0.01,yellow=0.04 --random 0.005 --force >/dev/null
step "scoring out/test.csv -> out/scored.csv"
$D score models/detector.joblib out/test.csv -o out/scored.csv --force >/dev/null
step "evaluating against the test labels and two baselines"
$D evaluate models/detector.joblib out/test.csv
TOP=$(.venv/bin/python -c "import csv; r=[x for x in csv.DictReader(open('out/scored.csv')) if x['rank']=='1']; print(r[0]['declaration_id'])")
step "explaining the top-ranked declaration $TOP"
$D explain models/detector.joblib out/test.csv --id "$TOP"
step "writing the HTML report -> out/report.html"
$D report models/detector.joblib out/scored.csv --labels out/test.csv -o out/report.html --force >/dev/null
echo "report: out/report.html"
echo "use it from your shell: source .venv/bin/activate   (or call .venv/bin/detector)"
