#!/usr/bin/env bash
# perf.sh: where the gateway's CPU goes during a max-rate run of the SIP bench (--what sip:
# the INVITE+SDP of run-matrix.sh) or of the RTP bench (--what rtp, the default: as
# run-rtp.sh, load.sh --rtp --sink xdp). For each system and generator: topology up
# (--steer napi), system up, one max-rate run and, from its 2nd second,
# `perf record -C GW_CPU -g` for SECONDS-3 seconds (the gateway core only: its NAPI
# threads, softirqs, sipnat's workers and whatever else ran there), then the top of
# `perf report --no-children` by task, by shared object and by symbol, and
# (tools/perf_split.py) the busy time per packet by where it went: split.md.
#   perf.sh --out DIR [--what rtp|sip] [--suts "..."] [--gens "..."] [--seconds 6]
#           [--flows 4096] [--top 25]
#   (rtp: --suts "sipnat-media kernel-masq" --gens "xdpgen kagen";
#    sip: --suts "sipnat sipnat-l3 kernel-nat" --gens kagen)
# Results: DIR/perf-SUT-GEN.data, DIR/perf-SUT-GEN.txt (the report), DIR/runs.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
lock_run "$@"
OUT="" WHAT=rtp SUTS="" GENS="" SECS=6 FLOWS=4096 TOP=25
while (($#)); do
  case $1 in
    --out) OUT=$2; shift ;;
    --what) WHAT=$2; shift ;;
    --suts) SUTS=$2; shift ;;
    --gens) GENS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --flows) FLOWS=$2; shift ;;
    --top) TOP=$2; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
((SECS >= 4)) || die "--seconds must be at least 4"
case $WHAT in
  rtp) LOAD=(--rtp 186 --sink xdp); SUTS=${SUTS:-"sipnat-media kernel-masq"}; GENS=${GENS:-"xdpgen kagen"} ;;
  sip) LOAD=(); SUTS=${SUTS:-"sipnat sipnat-l3 kernel-nat"}; GENS=${GENS:-kagen} ;;
  *) die "--what is rtp or sip" ;;
esac
command -v perf >/dev/null || die "perf not found (linux-perf)"
start_run

"$BENCH_DIR/topo.sh" up --steer napi
for s in $SUTS; do
  hook=$(sut_script "$s")
  CUR=$s; "$hook" up
  for g in $GENS; do
    f=$OUT/perf-$s-$g
    # The profile starts when the generator does (load.sh first builds its packets and
    # sets up the sink: seconds, with many flows), a second into its run.
    started=$OUT/.gen-started
    rm -f "$started"
    KABENCH_GEN_STARTED=$started "$BENCH_DIR/load.sh" --sut "$s" --pps-max --seconds "$SECS" --flows "$FLOWS" "${LOAD[@]}" --gen "$g" \
      --label "perf" --raw-dir "$OUT/raw" --json-out "$OUT/runs.jsonl" --max-wait 0 --retry-noisy 0 \
      >/dev/null &
    lp=$!
    for _ in $(seq 600); do
      [[ -e $started ]] || ! kill -0 $lp 2>/dev/null && break
      sleep 0.1
    done
    [[ -e $started ]] || die "the generator of $s did not start"
    log "generator of $s started"
    sleep 1
    # (Real-time itself: the generator keeps the other core busy and sipnat's worker,
    # SCHED_FIFO, this one; a normal-priority perf started its profile seconds late,
    # after the run.)
    chrt -f 1 perf record -q -C "$GW_CPU" -g -o "$f.data" -- sleep $((SECS - 3)) 2>/dev/null
    wait $lp || log "run failed: $s $g"
    { set +o pipefail  # head closes the pipe early
      echo "# $s, $WHAT, generator $g: perf record -C $GW_CPU -g, $((SECS - 3)) s"
      perf report -i "$f.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
      echo
      perf report -i "$f.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
      echo
      # symbols of the packet path only (NAPI threads, softirq, idle context, sipnat's
      # workers): other builds on a shared host run on this core too, and so do the hook's
      # sipnat CLI calls
      comms=$(perf report -i "$f.data" --no-children --sort comm --stdio -g none 2>/dev/null \
        | awk '$1 ~ /%$/ {print $2}' | grep -E '^(napi/|ksoftirqd/|swapper|sipnat-q)' | paste -sd, -)
      echo
      echo "# symbols, tasks: $comms (percent of these tasks' samples)"
      perf report -i "$f.data" --no-children --comms "$comms" --percentage relative --sort sym --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -"$TOP"
      set -o pipefail; } > "$f.txt"
    log "profile: $f.txt"
  done
  "$hook" down; CUR=""
done
# Each profile's busy time per packet by where it went (copy mode's own costs apart).
python3 "$BENCH_DIR/tools/perf_split.py" "$OUT" > "$OUT/split.md"
log "split: $OUT/split.md"
