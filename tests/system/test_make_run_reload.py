"""`make run`'s reload, as its banner tells: kill -HUP PID loads the code and models again while
a steady client is answered, every request with 200."""

import os
import re
import signal
import time

from deploy.localstack import free_port
from helpers.commands import UP, Run
from helpers.paced import Paced

RELOAD = re.compile(r"kill -HUP (\d+) reloads")
RELOADED = re.compile(r"^(reloaded|the reload failed.*)$")


def test_sighup_reloads_make_run_with_no_request_refused(figure):
    run = Run(["make", "run", f"PORT={free_port()}"])
    try:
        url = run.wait_for(UP, timeout=300).group(1)
        pid = int(run.wait_for(RELOAD, timeout=10).group(1))
        # The first example the banner prints (whatever the registry serves), else the probe.
        examples = re.findall(r"^  GET  (\S+)$", "".join(run.output), re.MULTILINE)
        with Paced(examples[0] if examples else f"{url}/healthz", rate=20) as client:
            time.sleep(1)
            start = time.monotonic()
            os.kill(pid, signal.SIGHUP)
            outcome = run.wait_for(RELOADED, timeout=120).group(1)
            seconds = time.monotonic() - start
            time.sleep(1)
        output = run.interrupt(timeout=30)
    finally:
        run.kill()
    figure("make run: SIGHUP reload under 20 req/s (outcomes, s)", (client.outcomes(), seconds))
    assert outcome == "reloaded", output
    assert "handover: done" in output
    assert client.outcomes() == {"200": len(client.answers)}
    assert len(client.answers) >= 20 * (seconds + 2) * 0.8
    assert "modelserver stopped" in output
