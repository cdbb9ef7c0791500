#!/bin/sh
# Runs one try of a task and records its exit status where any pipectl process can
# find it, so the status survives the tick that started it.
# usage: wrapper.sh STATUS TIMEOUT GRACE SUPERVISORS PYTHON PROJECT OFFSET UMASK -- ARGV...
status=$1 limit=$2 grace=$3 sups=$4 python=$5 project=$6 offset=$7 um=$8
shift 9
dir=${status%/*}
# Our files are private; the task gets the umask pipectl was started with (UMASK).
umask 077
[ -d "$dir" ] || mkdir -p -m 700 "$dir" 2>/dev/null
# Claim the try before running anything: STATUS.pid names this session (our pid) for
# whoever has to end it. A reaper that found our launcher dead before we got here has
# claimed it already (executor.abandon): then the try is not ours to run.
if ! { set -C; echo $$ > "$status.pid"; } 2>/dev/null && [ -e "$status.pid" ]; then
    exit 0
fi
set +C
umask "$um"
# coreutils timeout puts the task in a process group of its own and, on expiry,
# sends TERM to the whole group, then KILL after the grace period. 0 means no limit:
# then there is nothing to expire and the task runs directly (one process less per
# try). Whatever is left of the session when the try ends is killed by its reaper.
if [ "$limit" = 0 ]; then
    "$@"
else
    timeout -k "$grace" "$limit" "$@"
fi
rc=$?
umask 077
# The status directory may have been deleted under us: the result must not be lost.
[ -d "$dir" ] || mkdir -p -m 700 "$dir" 2>/dev/null
# Whatever sits at STATUS (normally nothing) is replaced, never written through: a FIFO
# there would block us, a symlink would send the status elsewhere.
if [ -e "$status" ] || [ -L "$status" ]; then
    rm -f -- "$status"
fi
# One small write of "RC\n": readers take a status only once its newline is there
# (executor.read_status), so no temporary file and mv(1) are needed.
printf '%s\n' "$rc" > "$status"
umask "$um"
# A live --wait supervisor (a pid file in SUPERVISORS whose process exists) picks the
# status up within milliseconds; with none alive, reap now so downstream tasks start
# at once. Builtins only: this sits between one task's end and the next one's start.
# The reaper leaves this session at once (pipectl.exec.reap): the session is the try's, and
# whoever records the try kills what is left of it.
if [ -n "$python" ]; then
    for f in "$sups"/*; do
        if [ -e "$f" ] && kill -0 "${f##*/}" 2>/dev/null; then
            exit 0
        fi
    done
    "$python" -m pipectl.exec.reap "$project" "$offset" </dev/null >/dev/null 2>&1 &
fi
