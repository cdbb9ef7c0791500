#!/bin/sh
# Runs one try of a task and records its exit status where any pipectl process can
# find it, so the status survives the tick that started it.
# usage: wrapper.sh STATUS TIMEOUT GRACE LOCK PYTHON PROJECT OFFSET -- ARGV...
status=$1 limit=$2 grace=$3 lock=$4 python=$5 project=$6 offset=$7
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
# A --wait supervisor holds a shared lock and will pick the status up within
# milliseconds; with none alive, reap now so downstream tasks start at once.
if [ -n "$python" ] && flock -n -x "$lock" true 2>/dev/null; then
    exec "$python" -m pipectl.reap "$project" "$offset" >/dev/null 2>&1
fi
