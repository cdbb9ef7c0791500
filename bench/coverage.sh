#!/bin/sh
# The whole suite under coverage, CLI subprocesses included, with its wall and CPU time.
#
#   bench/coverage.sh [pytest args...]      (PY=path/to/python to pick another venv)
#
# Most tests run the CLI as `sys.executable -m pipectl`; coverage only sees those
# processes when each one starts measuring itself. For the length of the run this
# script puts a .pth file into the venv's site-packages that calls
# coverage.process_startup() (a no-op unless COVERAGE_PROCESS_START is set) and
# exports COVERAGE_PROCESS_START pointing at a generated rcfile. The rcfile's
# data_file is absolute because the subprocesses run in temporary directories;
# parallel=true gives each process its own data file, combined at the end.
# source is this checkout's src/ (not the package name): a test that runs a
# temporary copy of the package must not add that copy's files to the report.
# The .pth file is removed on exit. Needs `pip install coverage` in the venv.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=$(mktemp -d "${TMPDIR:-/tmp}/pipectl-coverage.XXXXXX")
rc="$out/coveragerc"
cat >"$rc" <<EOF
[run]
parallel = true
concurrency = multiprocessing,thread
source = $PWD/src
data_file = $out/.coverage

[report]
precision = 2
EOF
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pth="$site/zz_pipectl_subprocess_coverage.pth"
echo 'import coverage; coverage.process_startup()' >"$pth"
trap 'rm -f "$pth"' EXIT
trap 'exit 130' INT TERM
export COVERAGE_PROCESS_START="$rc"
uptime
status=0
/usr/bin/time -f 'wall %e s  user %U s  sys %S s' \
    "$PY" -m coverage run --rcfile="$rc" -m pytest -q -p no:cacheprovider "$@" || status=$?
uptime
"$PY" -m coverage combine --rcfile="$rc" -q
"$PY" -m coverage report --rcfile="$rc" >"$out/report.txt"
tail -n 1 "$out/report.txt"
echo "per-file report: $out/report.txt (data: $out/.coverage)"
exit $status
