"""How autofit's processes end: SIGTERM handled like Ctrl-C, children that die with their parent, and probe
temp folders that do not outlive the process that made them.

Exit statuses: 130 after Ctrl-C (SIGINT), 143 after SIGTERM (128 + the signal, as shells report it); in both
the running probe is stopped, its trial marked `interrupted` and the outputs so far written.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

PROBE_DIR_PREFIX = "autofit-probe-"
_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be so that the same cleanup runs."""


def exit_status(interrupt: KeyboardInterrupt) -> int:
    return 143 if isinstance(interrupt, Terminated) else 130


def _raise_terminated(signum, frame):
    # once: the cleanup that follows must not be cut short by a second SIGTERM (PR_SET_PDEATHSIG sends one each
    # time a thread of a dying parent ends)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def sigterm_raises() -> None:
    """From now on SIGTERM raises Terminated in the main thread (a no-op outside it)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        pass


def die_with_parent(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (PR_SET_PDEATHSIG); if the parent is
    already gone (it died before this call), act on it at once. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def probe_dir_prefix() -> str:
    """Temp folders of this process's probes are named autofit-probe-<pid>-*, so stale ones can be found."""
    return f"{PROBE_DIR_PREFIX}{os.getpid()}-"


def sweep_stale_probe_dirs() -> list[Path]:
    """Remove probe temp folders whose process is gone (it was killed with SIGKILL, which nothing can catch)."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PROBE_DIR_PREFIX}*-*"):
        pid = folder.name[len(PROBE_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not folder.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's process
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
