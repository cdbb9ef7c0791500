"""Private files and directories.

The state directory holds every run's environment, parameters and logs, so whatever
pipectl creates in it is 0700 (directories) or 0600 (files) whatever the umask: the
modes are set explicitly, never left to ``mode & ~umask``. (``os.makedirs`` gives its
``mode`` to the last directory only; the parents it creates get the umask's default.)
Tasks keep the umask they were started with: their own outputs are the user's business.
"""
from __future__ import annotations

import os

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str) -> str:
    """Create ``path`` and any missing parent with mode 0700; returns ``path``.
    Directories that already exist are left as they are."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return path
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if parent == os.path.abspath(path):
            raise
        private_dir(parent)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            return path
    os.chmod(path, DIR_MODE)  # a umask such as 0o277 takes bits even from 0700
    return path


def private_open(path: str, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """``os.open(path, flags | O_CREAT)`` with the file 0600, its directory made private if
    missing; returns the descriptor."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except FileNotFoundError:
        private_dir(os.path.dirname(os.path.abspath(path)))
        fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # created under a harsh umask, or by cron's shell
    except OSError:
        pass  # not ours to change: still usable
    return fd


def write_private(path: str, text: str) -> None:
    """Replace the content of ``path`` (created 0600) with ``text``."""
    fd = private_open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
