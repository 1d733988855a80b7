"""A clean Debian 12 system in a chroot, to install ovnmeta's package as an operator would.

The base is debootstrap's minbase, made once per machine and never written: each use
mounts an overlay over it, so every test starts from a pristine system, and what the
overlay's upper directory holds afterwards is exactly what the test left behind.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

ROOTFS_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "debian_rootfs.sh"


def base() -> Path:
    """The pristine root (scripts/debian_rootfs.sh: debootstrap's minbase), made if missing."""
    out = subprocess.run(["bash", str(ROOTFS_SCRIPT)], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"debian_rootfs.sh failed: {out.stderr[-3000:]}")
    return Path(out.stdout.strip())


class DebianRoot:
    """An overlay over the base, with /proc, /sys, /dev and the host's /run/netns mounted."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="omdeb-", dir="/var/tmp"))
        self.upper, self.root = self.work / "upper", self.work / "root"
        self.mounts: list[Path] = []
        self.lower = base()

    def __enter__(self) -> "DebianRoot":
        lower = self.lower
        for d in (self.upper, self.work / "ovl-work", self.root):
            d.mkdir()
        self._mount(["-t", "overlay", "overlay", "-o",
                     f"lowerdir={lower},upperdir={self.upper},workdir={self.work / 'ovl-work'}"],
                    self.root)
        self._mount(["-t", "proc", "proc"], self.root / "proc")
        self._mount(["--rbind", "/sys"], self.root / "sys")
        self._mount(["--rbind", "/dev"], self.root / "dev")
        # A bind of the host's shared /run/netns joins its peer group: namespaces the agent
        # makes inside are the host's.
        Path("/run/netns").mkdir(exist_ok=True)
        (self.root / "run" / "netns").mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", "/run/netns"], self.root / "run" / "netns")
        shutil.copy("/etc/resolv.conf", self.root / "etc" / "resolv.conf")
        return self

    def _mount(self, args: list[str], target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        self.mounts.append(target)

    def __exit__(self, *exc) -> None:
        # Private first: unmounting a peer of the host's /run/netns would propagate and
        # unmount the host's namespaces too. This changes only this tree's copies.
        subprocess.run(["mount", "--make-rprivate", str(self.root)], capture_output=True)
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self, *argv: str, check: bool = True, timeout: float = 600,
            **kw) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LANG": "C.UTF-8"}
        out = subprocess.run(["chroot", str(self.root), *argv], capture_output=True,
                             text=True, timeout=timeout, env=env, **kw)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n"
                               f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def popen(self, *argv: str, log: Path) -> subprocess.Popen:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        f = open(log, "a")
        return subprocess.Popen(["chroot", str(self.root), *argv], stdout=f, stderr=f, env=env)

    def changed(self) -> list[str]:
        """Every path the overlay holds above the base: what was written since the start."""
        import stat
        out = []
        for p in self.upper.rglob("*"):
            st = p.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue   # copied up when something below changed
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                continue   # a whiteout: removed again
            out.append("/" + str(p.relative_to(self.upper)))
        return sorted(out)
