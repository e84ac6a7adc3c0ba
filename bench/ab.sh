#!/usr/bin/env bash
# ab.sh: side-by-side comparison of sipnat variants (binaries and/or data-path settings),
# interleaved in one run so that a noisy host hits every variant alike.
#   ab.sh --out DIR --variant NAME='ENV=VALUE ...' [--variant ...] [--rounds 3]
#         [--seconds 5] [--flows "1 4096"] [--rates "max,300000"] [--steer napi]
#         [-- extra load.sh args]
# A variant is a set of environment assignments for sut-sipnat.sh, e.g.
#   --variant base='SIPNAT=/tmp/sipnat-old' --variant new='SIPNAT=target/release/sipnat'
#   --variant bp='KA_SIPNAT_BUSY_POLL=true'
# Each round starts every variant once (order rotated per round), runs every (rate, flows)
# for it, and stops it. Results: DIR/runs.jsonl (label = variant), DIR/ab.md (medians per
# variant, rate and flows, with the per-run values).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
OUT="" ROUNDS=3 SECS=5 FLOWS="1" RATES="max" STEER=napi
NAMES=() declare -A SPEC=()
EXTRA=()
while (($#)); do
  case $1 in
    --out) OUT=$2; shift ;;
    --variant) n=${2%%=*}; NAMES+=("$n"); SPEC[$n]=${2#*=}; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --flows) FLOWS=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --steer) STEER=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ -n $OUT && ${#NAMES[@]} -gt 0 ]] || die "usage: ab.sh --out DIR --variant NAME='ENV=V ...' ..."
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
ensure_built
UP=""
cleanup() { [[ -n $UP ]] && env ${SPEC[$UP]} "$BENCH_DIR/sut-sipnat.sh" down || true; "$BENCH_DIR/topo.sh" down || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$BENCH_DIR/topo.sh" up --steer "$STEER"
n=${#NAMES[@]}
for round in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    v=${NAMES[$(((i + round - 1) % n))]}
    log "round $round: variant $v (${SPEC[$v]})"
    # shellcheck disable=SC2086  # SPEC holds several assignments
    env ${SPEC[$v]} "$BENCH_DIR/sut-sipnat.sh" up; UP=$v
    for rate in ${RATES//,/ }; do
      for f in $FLOWS; do
        if [[ $rate == max ]]; then ra=(--pps-max); else ra=(--pps "$rate"); fi
        env ${SPEC[$v]} "$BENCH_DIR/load.sh" --sut sipnat "${ra[@]}" --seconds "$SECS" --flows "$f" --label "$v" \
          --raw-dir "$OUT/raw" --json-out "$OUT/runs.jsonl" "${EXTRA[@]}" >/dev/null \
          || log "run failed: $v rate=$rate flows=$f"
      done
    done
    env ${SPEC[$v]} "$BENCH_DIR/sut-sipnat.sh" down; UP=""
  done
done
python3 - "$OUT/runs.jsonl" "${NAMES[@]}" > "$OUT/ab.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip().startswith("{")]
names = sys.argv[2:]
g = {}
for r in rows:
    g.setdefault((str(r["target_pps"]), r["flows"], r["label"]), []).append(r)
def m(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
def f(v):
    return "-" if v is None else "{:,.0f}".format(v)
print("| rate | flows | variant | runs | delivered pps median (runs) | gw ns/pkt median (runs) | gw tasks ns/pkt median (runs) | gw busy % | loss % | accepted pps | CPU s: napi in / sipnat | noisy | correct |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
for k in sorted(g, key=lambda k: (k[0] != "max", k[0], k[1], names.index(k[2]) if k[2] in names else 99)):
    rs = g[k]
    tk = lambda r, k: r.get("gw_tasks_cpu_s", {}).get(k)
    print("| %s | %d | %s | %d | %s (%s) | %s (%s) | %s (%s) | %s | %s | %s | %s / %s | %d | %s |" % (
        k[0], k[1], k[2], len(rs), f(m([r["delivered_pps"] for r in rs])), " ".join(f(r["delivered_pps"]) for r in rs),
        f(m([r["gw_ns_per_pkt"] for r in rs])), " ".join(f(r["gw_ns_per_pkt"]) for r in rs),
        f(m([r.get("gw_tasks_ns_per_pkt") for r in rs])), " ".join(f(r.get("gw_tasks_ns_per_pkt")) for r in rs),
        f(m([r["gw_cpu_busy_pct"] for r in rs])), "%.1f" % m([r["loss_pct"] for r in rs]),
        f(m([r["accepted_pps"] for r in rs])),
        "%.2f" % (m([tk(r, "napi/ka-gwin") for r in rs]) or 0), "%.2f" % (m([tk(r, "sut") for r in rs]) or 0),
        sum(1 for r in rs if r.get("noisy")), all(r.get("sample", {}).get("correct", True) for r in rs)))
EOF
cat "$OUT/ab.md"
