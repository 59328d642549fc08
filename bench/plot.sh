#!/usr/bin/env bash
# bench/plot.sh: bench/plots/latency.png from bench/plots/latency.dat (what
# bench/latency.lua writes): p50, p99 and p99.9 of produce -> gateway
# receipt against the offered single-chat rate. Needs Debian's gnuplot
# (apt-get install gnuplot-nox).
#
#   bench/plot.sh [DAT] [PNG]
set -euo pipefail
cd "$(dirname "$0")/.."
DAT=${1:-bench/plots/latency.dat}
PNG=${2:-bench/plots/latency.png}
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
# the .dat's header lines name the run and the maximum sustainable rate
TITLE=$(sed -n '1s/^# bench\/latency.lua //p' "$DAT")
MAX=$(sed -n 's/^# maximum sustainable rate \([0-9]*\) msg\/s.*/\1/p' "$DAT")
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
     "" using 2:7 with linespoints pt 9 title "p99.9"
GP
echo "wrote $PNG"
