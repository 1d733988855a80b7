"""One agent per host: two agents reconciling the same namespaces undo each other's work."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(RuntimeError):
    def __init__(self, path: Path, pid: str) -> None:
        super().__init__(f"another ovnmeta-agent (pid {pid or 'unknown'}) holds {path}; "
                         "stop it first")
        self.pid = pid


class AgentLock:
    """An flock held for the process lifetime; the file names the holder's PID."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def fd(self) -> int | None:
        """The descriptor holding the lock: a forked helper must close its copy, or a
        helper outliving a killed agent would keep the next one from starting."""
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
