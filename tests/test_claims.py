"""Claims (tv_lens.claims, on filelock): a second process waits for the holder, learns who it is, and gets the
claim once the holder is gone, even killed."""

import os
import socket
import subprocess
import sys
import threading
import time

from tv_lens.claims import claimed

HOLD = """
import sys, time
from tv_lens.claims import claimed
with claimed(sys.argv[1], print):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_claim_waits_for_its_holder_and_is_free_once_the_holder_is_killed(tmp_path):
    path = tmp_path / "unit.claim"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        waits, got = [], threading.Event()

        def claim():
            with claimed(path, waits.append):
                got.set()

        threading.Thread(target=claim, daemon=True).start()
        deadline = time.monotonic() + 30
        while not waits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waits == [f"pid {holder.pid} on {socket.gethostname()}"]
        assert not got.wait(0.3), "the claim was taken while its holder still held it"
    finally:
        holder.kill()
        holder.wait()
    assert got.wait(30), "the claim stayed taken after its holder was killed"


def never_waits(holder: str) -> None:
    raise AssertionError(f"waited for {holder}")


def test_a_free_claim_is_taken_at_once_and_names_its_holder(tmp_path):
    path = tmp_path / "unit.claim"
    with claimed(path, never_waits):
        assert path.read_text() == f"pid {os.getpid()} on {socket.gethostname()}"
    with claimed(path, never_waits):  # released at the end of the block
        pass
