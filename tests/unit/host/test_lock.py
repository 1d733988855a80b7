import os
import subprocess
import sys

import pytest

from ovnmeta.host.lock import AgentLock, AlreadyRunning

HOLD = ("import sys, time; from ovnmeta.host.lock import AgentLock; "
        "AgentLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(30)")


def test_second_holder_is_refused_with_the_first_pid(tmp_path) -> None:
    path = tmp_path / "agent.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning) as err:
            AgentLock(path).acquire()
        assert f"pid {holder.pid}" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    lock = AgentLock(path)
    lock.acquire()
    assert path.read_text().strip() == str(os.getpid())
    lock.release()
