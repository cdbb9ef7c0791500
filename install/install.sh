#!/bin/sh
# Install pipectl into a virtualenv of its own, link the executable onto PATH, and
# (given a project directory) install that project's crontab line.
#
#   install/install.sh [--source SRC] [--prefix DIR] [--bin-dir DIR] [--no-cron] [PROJECT_DIR]
#
# SRC: what pip installs (default: this checkout). As root the defaults are
# /opt/pipectl and /usr/local/bin; otherwise ~/.local/share/pipectl and ~/.local/bin.
# PYTHON picks the interpreter (default python3, 3.11 or newer).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
source_spec="$here/.."
if [ "$(id -u)" -eq 0 ]; then
    prefix=/opt/pipectl bindir=/usr/local/bin
else
    prefix="${XDG_DATA_HOME:-$HOME/.local/share}/pipectl" bindir="$HOME/.local/bin"
fi
cron=yes project=

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_spec=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --bin-dir) bindir=$2; shift 2 ;;
        --no-cron) cron=no; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$project" ] || { echo "install.sh: one project directory only" >&2; exit 2; }
           project=$1; shift ;;
    esac
done

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "install.sh: $python is older than 3.11" >&2; exit 1; }

venv="$prefix/venv"
echo "install.sh: virtualenv $venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_spec"

mkdir -p "$bindir"
ln -sf "$venv/bin/pipectl" "$bindir/pipectl"
echo "install.sh: linked $bindir/pipectl -> $venv/bin/pipectl"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "install.sh: note: $bindir is not on your PATH" ;; esac

if [ -n "$project" ] && [ "$cron" = yes ]; then
    # the venv's own executable, so the crontab line names the venv, not the link
    "$venv/bin/pipectl" --project "$project" install cron
fi
