"""The guard never touches the network: e-mail validation uses tldextract's bundled suffix list.

Runs in a fresh interpreter whose sockets refuse to connect, so no earlier test can have warmed
tldextract's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, socket
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(str(args[:1]))
        raise OSError("network disabled for this test")
    socket.getaddrinfo = refuse
    socket.socket.connect = lambda self, *a: refuse(*a)
    from finserve.serving.guard import GuardConfig, PIIGuard
    guard = PIIGuard(GuardConfig(entities=["EMAIL_ADDRESS"]))
    text = "write to jane.doe@example.co.uk or ops@bank.example.com, not me@localhost"
    result = guard.scan(text)
    print(json.dumps({"found": [text[f.start:f.end] for f in result.findings], "attempts": attempts}))
    """
)


def test_email_validation_works_with_the_network_down() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env, check=True
    )
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["found"] == ["jane.doe@example.co.uk", "ops@bank.example.com"]
    assert outcome["attempts"] == []
    assert "public_suffix_list" not in proc.stderr
