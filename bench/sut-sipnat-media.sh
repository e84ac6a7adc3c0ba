#!/usr/bin/env bash
# sut-sipnat-media.sh: sipnat's media NAT in XDP as a system under test (the RTP bench,
# run-rtp.sh): the daemon as in sut-sipnat.sh, plus KA_MEDIA_BINDINGS (default 4096) static
# media bindings installed with `sipnat xdp media add --file`: flow i's internal
# 10.88.0.2:(20000+2i) leaves as 198.51.100.1:(30000+2i) (a port translation, as the
# workers' SDP-learned bindings do). Use `topo.sh up --steer napi`: XDP_REDIRECT into
# ka-gwout is delivered because ka-out0 runs NAPI (GRO on), see docs/deploy.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE="$(dirname "$0")/sut-sipnat.sh"
CONF=$RUN_DIR/sipnat.toml
BINDINGS=$RUN_DIR/media-bindings.txt
N=${KA_MEDIA_BINDINGS:-4096}
if [[ -n ${SIPNAT:-} ]]; then BIN=$SIPNAT
elif [[ -x $REPO_DIR/target/release/sipnat ]]; then BIN=$REPO_DIR/target/release/sipnat
else BIN=sipnat; fi

case "${1:-}" in
  up)
    KA_SIPNAT_MEDIA=true "$BASE" up
    # kagw must know the next hops for the FIB lookup in XDP (topo.sh installs them).
    python3 -c "
for i in range($N):
    print('$IP_IN:%d $IP_GWOUT:%d' % (20000 + 2 * i, 30000 + 2 * i))" > "$BINDINGS"
    nsx $NS_GW "$BIN" xdp media add -c "$CONF" --file "$BINDINGS" >&2
    ;;
  expect) echo "src=$IP_GWOUT fields=none" ;;
  info) echo "$("$BASE" info); XDP media NAT, $N static bindings" ;;
  state)
    # the XDP verdict counters of both interfaces (media ones included)
    "$BASE" state | grep -E '^xdp\.' || true ;;
  *) exec "$BASE" "$@" ;;
esac
