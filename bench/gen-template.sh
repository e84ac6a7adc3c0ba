#!/usr/bin/env bash
# gen-template.sh: skeleton of an external load generator for load.sh / run-matrix.sh
# (`--gen NAME` runs gen-NAME.sh from this folder; a path works too). Copy it to
# gen-<name>.sh and replace the command. Here: kagen, the built-in AF_PACKET generator.
#
# Contract:
#   run --pcap P --msg M --flows K --seconds S --pps N --ns NS --if IF --cpu C --dst IP --dport PORT
#       Send K flows for S seconds at N pps (0 = as fast as possible) from namespace NS out
#       of interface IF, pinned to CPU C. P is the pcap kabench rendered from template M
#       (K frames, flow i from UDP port 5060+i, MACs/addresses of the topology, to
#       IP:PORT); a generator with its own templates may use M/K/IP/PORT instead. Open
#       loop: frames the kernel refuses count as offered, not retried. Print, last on
#       stdout, one JSON line: {"offered": n, "sent": n, "seconds": s} (sent = frames
#       that entered the link; seconds = the generator's own run time). Exit 0.
#   info
#       One line: name, version, mode.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  run)
    shift
    declare -A o=()
    while (($#)); do o[${1#--}]=$2; shift 2; done
    args=(-p "${o[pcap]}" -i "${o[if]}" -m packet -s "${o[seconds]}" -c "${o[cpu]}")
    [[ ${o[pps]} != 0 ]] && args+=(-r "${o[pps]}")
    ensure_built
    # kagen prints {"offered":..,"sent":..,"seconds":..,...} itself
    exec ip netns exec "${o[ns]}" nice -n -15 "$BUILD_DIR/kagen" "${args[@]}" ;;
  info) echo "kagen (AF_PACKET, qdisc bypass) through the generator hook" ;;
  *) echo "usage: $0 run --pcap P --msg M --flows K --seconds S --pps N --ns NS --if IF --cpu C --dst IP --dport PORT | info" >&2; exit 2 ;;
esac
