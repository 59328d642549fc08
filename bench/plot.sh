#!/usr/bin/env bash
# bench/plot.sh: the benchmark plots, PNG beside their data in bench/plots/.
# Needs Debian's gnuplot (apt-get install gnuplot-nox).
#
#   bench/plot.sh [latency]   latency.dat (bench/latency.lua) -> latency.png: p50, p99
#                             and p99.9 of produce -> gateway receipt against the offered
#                             single-chat rate (latency-floor.dat, when there, adds the
#                             floor's p99)
#   bench/plot.sh cpu         cpu.dat (bench/sidebyside.lua push) -> cpu.png: CPU per
#                             message against recipients (single chat = 1), log-log, for
#                             OpenIM's Go path, impulse and the floor
#   bench/plot.sh rss         rss.dat (written here by build/bench_micro rss, one process
#                             per size) -> rss.png: the online table's memory against
#                             online users
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
KIND=${1:-latency}
D=bench/plots

case "$KIND" in
latency)
  DAT=$D/latency.dat PNG=$D/latency.png
  # the .dat's header lines name the run and the maximum sustainable rate
  TITLE=$(sed -n '1s/^# bench\/latency.lua //p' "$DAT")
  MAX=$(sed -n 's/^# maximum sustainable rate \([0-9]*\) msg\/s.*/\1/p' "$DAT")
  FLOOR=""
  [ -f "$D/latency-floor.dat" ] && FLOOR=", \"$D/latency-floor.dat\" using 2:6 with linespoints pt 4 dt 2 title \"floor p99\""
  gnuplot <<GP
set terminal pngcairo size 900,560 font "DejaVu Sans,10"
set output "$PNG"
set title "impulse single chat, produce -> gateway receipt\n{/*0.8 $TITLE}"
set xlabel "offered rate (messages/s; maximum sustainable: $MAX)"
set ylabel "latency (ms, log scale)"
set logscale y
set grid
set key top left
set xrange [0:*]
plot "$DAT" using 2:5 with linespoints pt 7 title "p50", \
     "" using 2:6 with linespoints pt 5 title "p99", \
     "" using 2:7 with linespoints pt 9 title "p99.9"$FLOOR
GP
  ;;
cpu)
  DAT=$D/cpu.dat PNG=$D/cpu.png
  TITLE=$(sed -n '1s/^# //p' "$DAT")
  gnuplot <<GP
set terminal pngcairo size 900,560 font "DejaVu Sans,10"
set output "$PNG"
set title "CPU per message against recipients (medians of the rounds)\n{/*0.8 $TITLE}"
set xlabel "recipients per message (single chat = 1; groups half online)"
set ylabel "CPU per message (µs)"
set logscale xy
set grid
set key top left
plot "$DAT" using 1:2 with linespoints pt 7 title "OpenIM's Go path (lower bound)", \
     "" using 1:3 with linespoints pt 5 title "impulse", \
     "" using 1:4 with linespoints pt 9 title "floor (bench/floor.c)"
GP
  ;;
rss)
  DAT=$D/rss.dat PNG=$D/rss.png
  {
    echo "# build/bench_micro rss, $(date -u +%Y-%m-%d), one process per size: users rss_growth_kib bytes_per_user process_rss_kib"
    for n in 1000000 2000000 5000000 10000000; do build/bench_micro rss "$n" | grep -v '^#'; done
  } > "$DAT"
  # OpenIM's fullUserCache (sync.Map) per user, W3 of bench/sidebyside.lua cache
  # (measured at 1M users): drawn as a line through the origin when there
  GOLINE=""
  if [ -f "$D/go-w3.txt" ]; then
    GOW3=$(cat "$D/go-w3.txt")
    GOLINE=", \"\" using (\$1/1e6):(\$1*$GOW3/1048576) with lines dt 2 title \"OpenIM's sync.Map, $GOW3 bytes/user (W3, measured at 1M)\""
  fi
  gnuplot <<GP
set terminal pngcairo size 900,560 font "DejaVu Sans,10"
set output "$PNG"
set title "the online table's resident memory against online users (IDs u<10000000+i>, 2 platforms)"
set xlabel "online users (millions)"
set ylabel "RSS growth (MiB)"
set grid
set key top left
plot "$DAT" using (\$1/1e6):(\$2/1024) with linespoints pt 7 title "impulse's online table"$GOLINE
GP
  ;;
*) echo "plot.sh: unknown plot $KIND (latency, cpu, rss)" >&2; exit 2 ;;
esac
echo "wrote $PNG"
