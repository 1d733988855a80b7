"""Creating a namespace moves only the calling thread, which comes back; a failed creation
leaves no file behind (a leftover name would be taken for another agent's namespace)."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from ovnmeta.host import namespace

NAME = "omtest-create"
PATH = os.path.join(namespace.NETNS_DIR, NAME)


def _here() -> str:
    return os.readlink("/proc/thread-self/ns/net")


@pytest.fixture
def clean():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    os.makedirs(namespace.NETNS_DIR, exist_ok=True)
    yield
    if namespace.is_namespace(NAME):
        namespace.remove_netns(PATH)
    elif os.path.exists(PATH):
        os.unlink(PATH)


def test_a_namespace_is_made_and_removed_and_the_thread_stays_home(clean) -> None:
    home = _here()
    namespace.new_netns(PATH)
    assert _here() == home
    assert namespace.is_namespace(NAME)
    with namespace.entered(NAME):
        inside = _here()
    assert inside != home and _here() == home
    namespace.remove_netns(PATH)
    assert not os.path.exists(PATH)


class _MountFails:
    """The real libc, except that mount() fails as it would without CAP_SYS_ADMIN."""

    def __getattr__(self, name: str):
        return getattr(ctypes.CDLL(None, use_errno=True), name)

    @staticmethod
    def mount(*_args) -> int:
        ctypes.set_errno(errno.EPERM)
        return -1


def test_a_failed_mount_leaves_no_file_and_the_thread_comes_back(clean, monkeypatch) -> None:
    home = _here()
    monkeypatch.setattr(namespace, "_libc", _MountFails())
    with pytest.raises(OSError) as info:
        namespace.new_netns(PATH)
    assert info.value.errno == errno.EPERM
    assert f"bind mount on {PATH} failed" in str(info.value)
    assert not os.path.exists(PATH)
    assert _here() == home
