"""A cgroup v2 group of its own for a server latencylab starts (issue 33), so that the kernel's pressure stall
times the host evidence reads (collect/host.py) are the server's, not the whole machine's: a machine's "some"
counts every other process's waits, and is weighted by the CPUs that were busy (on a 2-core machine with the other
core busy, a reader throttled for its whole life showed half of it). A server a user runs under systemd has a group
of its own already. Made only where this process may (root, or a hierarchy delegated to it) and where the group
would only count: where the hierarchy's root hands controllers to its children (a host on cgroup v2 alone), a new
group would get a CPU and I/O weight of its own beside the machine's slices and change how the server is scheduled,
so none is made there and the server's own group (a service's, a session's) is read instead. Where none is made,
the evidence says whose it is (`psi_scope`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from pathlib import Path

PROC = Path("/proc")


@functools.cache
def v2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host)."""
    try:
        mounts = (PROC / "self" / "mounts").read_text().splitlines()
    except OSError:
        return None
    return next((Path(parts[1]) for parts in map(str.split, mounts) if len(parts) > 2 and parts[2] == "cgroup2"),
                None)


def group_of(pid: int) -> Path | None:
    """The folder of the cgroup v2 group `pid` is in, where that is not the hierarchy's root; None otherwise."""
    root = v2_root()
    try:
        own = next((line[3:] for line in (PROC / str(pid) / "cgroup").read_text().splitlines()
                    if line.startswith("0::")), "/").strip()
    except OSError:
        return None
    if root is None or own in ("", "/"):
        return None
    folder = root / own.lstrip("/")
    return folder if folder.is_dir() else None


def own_group(pid: int, name: str) -> Path | None:
    """Move `pid` (a server just started: the processes it starts later follow it) into a new group of the cgroup v2
    hierarchy's root; None where that cannot be done (not root, no cgroup v2, no pressure files there) or would do
    more than count (controllers handed to the root's children)."""
    root = v2_root()
    try:
        if root is None or (root / "cgroup.subtree_control").read_text().split():  # it would change scheduling
            return None
    except OSError:
        return None
    folder = root / f"latencylab-{name}-{pid}"
    try:
        folder.mkdir()
    except OSError:
        return None
    try:
        (folder / "cgroup.procs").write_text(str(pid))
        if (folder / "cpu.pressure").exists():
            return folder
    except OSError:
        pass
    release(folder)
    return None


def release(folder: Path | None) -> None:
    """Remove a group `own_group` made, once its processes have ended (any still in it go back to the root)."""
    if folder is None:
        return
    root = v2_root()
    for _ in range(20):
        with contextlib.suppress(OSError):
            for pid in (folder / "cgroup.procs").read_text().split():
                if root is not None:
                    with contextlib.suppress(OSError):
                        (root / "cgroup.procs").write_text(pid)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # a process still leaving
            time.sleep(0.05)
    sys.stderr.write(f"latencylab: could not remove the cgroup {folder}\n")
