#!/bin/sh
# Runs one try of a task and records its exit status where any pipectl process can
# find it, so the status survives the tick that started it.
# usage: wrapper.sh STATUS TIMEOUT GRACE SUPERVISORS PYTHON PROJECT OFFSET -- ARGV...
status=$1 limit=$2 grace=$3 sups=$4 python=$5 project=$6 offset=$7
shift 8
# coreutils timeout puts the task in a process group of its own and, on expiry,
# sends TERM to the whole group, then KILL after the grace period: no grandchild
# survives. 0 means no limit: then there is nothing to expire and the task runs
# directly (one process less per try; the session still holds every descendant).
if [ "$limit" = 0 ]; then
    "$@"
else
    timeout -k "$grace" "$limit" "$@"
fi
rc=$?
# One small write of "RC\n": readers take a status only once its newline is there
# (executor.read_status), so no temporary file and mv(1) are needed.
printf '%s\n' "$rc" > "$status"
# A live --wait supervisor (a pid file in SUPERVISORS whose process exists) picks the
# status up within milliseconds; with none alive, reap now so downstream tasks start
# at once. Builtins only: this sits between one task's end and the next one's start.
if [ -n "$python" ]; then
    for f in "$sups"/*; do
        if [ -e "$f" ] && kill -0 "${f##*/}" 2>/dev/null; then
            exit 0
        fi
    done
    exec "$python" -m pipectl.reap "$project" "$offset" >/dev/null 2>&1
fi
