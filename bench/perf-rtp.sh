#!/usr/bin/env bash
# perf-rtp.sh: perf.sh --what rtp (where the gateway's CPU goes during the RTP run).
exec "$(dirname "$0")/perf.sh" --what rtp "$@"
