"""A router that stops answers its waiting allocations with 503 and the reason,
not a dropped connection (issue 15, item 9)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import RouterFleet

pytestmark = pytest.mark.processes


def test_waiting_allocation_gets_503_with_reason_at_shutdown(tmp_path: Path) -> None:
    fleet = RouterFleet(tmp_path)
    try:
        # consensus=2 with nobody else: the allocation waits for a quorum.
        router = fleet.launch("alone", extra=["--ipalloc-init", "consensus=2"])
        answer: dict[str, Any] = {}

        def allocate() -> None:
            try:
                response = httpx.post(f"http://{router.api}/ip/waiter?wait=60",
                                      headers={"Content-Type": "application/json"},
                                      timeout=30)
                answer["status"] = response.status_code
                answer["body"] = response.json()
            except httpx.HTTPError as exc:
                answer["error"] = repr(exc)

        thread = threading.Thread(target=allocate)
        thread.start()
        time.sleep(1.5)  # the request is waiting inside the router
        router.kill(signal.SIGTERM)
        thread.join(timeout=20)
        assert answer.get("status") == 503, answer
        assert "shutting down" in answer["body"]["error"]
        assert router.process.returncode == 0
    finally:
        fleet.stop_all()
