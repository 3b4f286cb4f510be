#!/usr/bin/env bash
# Install into .venv and run the main job end to end on generated data (README command 1):
# generate training and test declarations, train, score, evaluate, explain the top one,
# and write the HTML risk report.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[report]"
D=.venv/bin/detector
mkdir -p out models
$D generate --rows 200000 --seed 1 -o out/train.csv --force >/dev/null
$D generate --rows 100000 --seed 2 -o out/test.csv --force >/dev/null
$D train out/train.csv -o models/detector.joblib --lanes red=0.01,yellow=0.04 --random 0.005 --force >/dev/null
$D score models/detector.joblib out/test.csv -o out/scored.csv --force >/dev/null
$D evaluate models/detector.joblib out/test.csv
TOP=$(.venv/bin/python -c "import csv; r=[x for x in csv.DictReader(open('out/scored.csv')) if x['rank']=='1']; print(r[0]['declaration_id'])")
$D explain models/detector.joblib out/test.csv --id "$TOP"
$D report models/detector.joblib out/scored.csv --labels out/test.csv -o out/report.html --force
echo "report: out/report.html"
