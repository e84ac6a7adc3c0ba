#!/usr/bin/env bash
# sut-sipnat-l3.sh: sipnat with `[rewrite] enabled = false` as a system under test: the same
# daemon, XDP steering, AF_XDP worker, NAPT and IP source translation as sut-sipnat.sh, but
# every SIP payload leaves as it arrived. Next to sipnat and kernel-nat in one run it splits
# sipnat's gateway CPU per packet into the data path's share (this SUT) and the SIP work's
# (sipnat less this SUT); bench/tools/e2e_report.py prints that split. Not a product
# configuration for this topology (the phone's private address stays in the SIP text).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE="$(dirname "$0")/sut-sipnat.sh"
export KA_SIPNAT_REWRITE=false
case "${1:-}" in
  expect) echo "src=$IP_GWOUT fields=none" ;;
  *) exec "$BASE" "$@" ;;
esac
