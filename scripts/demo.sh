#!/bin/bash
# The main job against the local lab: a good control promoted through every
# stage, rolled back by hand, then a broken one caught and rolled back at its
# first stage; then each rollout's report (.demo/report-*.png, .demo/report.html).
# Leaves the machine as it found it (KEEP_LAB=1 keeps the lab up).
set -uo pipefail
cd "$(dirname "$0")/.."
ccrollout=.venv/bin/ccrollout
export CCROLLOUT_HOME="${CCROLLOUT_HOME:-$PWD/.demo}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
finish() {
    if [ "${KEEP_LAB:-0}" != 1 ]; then
        step "ccrollout lab down"
        "$ccrollout" lab traffic stop >/dev/null 2>&1 || true
        "$ccrollout" lab down
    fi
}
trap finish EXIT

step "ccrollout lab up --hosts 3"
inventory="$("$ccrollout" lab up --hosts 3)" || exit 1
echo "inventory: $inventory"
"$ccrollout" lab traffic start || exit 1

step "ccrollout check playbooks/lab-reno.yaml"
"$ccrollout" check -i "$inventory" playbooks/lab-reno.yaml || exit 1

step "ccrollout apply playbooks/lab-reno.yaml   (expect: promoted through every stage)"
"$ccrollout" apply -i "$inventory" playbooks/lab-reno.yaml
status=$?
echo "exit code $status"
[ "$status" = 0 ] || exit 1
good="$("$ccrollout" history --json | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')"
"$ccrollout" facts -i "$inventory" lab

step "ccrollout trace lab1:lab2 --duration 4s   (lab1 drops 3 % of its packets: which connections retransmit?)"
"$ccrollout" lab impair lab1 --loss 3% >/dev/null || exit 1
"$ccrollout" trace -i "$inventory" lab1:lab2 --duration 4s --top 2
"$ccrollout" lab impair lab1 --clear >/dev/null || exit 1

step "ccrollout rollback   (undo it by hand)"
"$ccrollout" rollback -i "$inventory" || exit 1
"$ccrollout" facts -i "$inventory" lab

step "ccrollout apply playbooks/lab-broken.yaml   (expect: caught and rolled back at stage 1)"
"$ccrollout" apply -i "$inventory" playbooks/lab-broken.yaml
status=$?
echo "exit code $status (1 = a canary failed and was rolled back)"
[ "$status" = 1 ] || exit 1
"$ccrollout" facts -i "$inventory" lab

step "ccrollout history"
"$ccrollout" history

step "ccrollout report   (each rollout's evidence: the canary against its baseline and its control hosts)"
"$ccrollout" report -o "$CCROLLOUT_HOME/report-good.png" "$good" || exit 1
"$ccrollout" report -o "$CCROLLOUT_HOME/report-broken.png" || exit 1
"$ccrollout" report -o "$CCROLLOUT_HOME/report.html" || exit 1
