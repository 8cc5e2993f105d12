"""The engine notices a worker that died (killed for memory, say) even while another worker keeps reporting
progress, instead of waiting for the live workers to finish first."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mesalab.errors import MesalabError
from mesalab.studies.engine import Batch, run_local

CHATTY_S = 240  # how long the live worker keeps reporting progress


class DiesOrChats:
    """A study stand-in (only ``measure`` is used by the engine): batch "dies" is SIGKILLed after a second, batch
    "chatty" reports progress every 20 ms for ``CHATTY_S`` seconds."""

    def measure(self, batch, progress=None):
        if batch.spec == "dies":
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < CHATTY_S:
            n += 1
            progress(n)
            time.sleep(0.02)
        return "done"


def test_a_killed_worker_is_reported_while_another_keeps_reporting_progress():
    batches = [Batch("dies", ("a",), "dies", 1), Batch("chatty", ("b",), "chatty", 1)]
    t0 = time.monotonic()
    with pytest.raises(MesalabError, match=r"a worker exited with code -9 \(out of memory\?\); re-run"):
        run_local(DiesOrChats(), batches, 2, on_result=lambda b, r: None, on_progress=lambda b, n: None)
    assert time.monotonic() - t0 < CHATTY_S / 2  # noticed long before the live worker would have finished
