"""The JS SDK (`@langchain/langgraph-sdk`, pinned in `tests/js/package-lock.json`) against
the target: `node --test` in `tests/js` with the target's URL and key in the env.

`make test` installs the JS dependencies first (`npm ci`, stamp file). Without node or
the modules the test skips locally and fails under `CI=true`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.agent_protocol.conftest import SLOW_MODEL, Target

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SDK_PACKAGE = JS_DIR / "node_modules" / "@langchain" / "langgraph-sdk" / "package.json"
NODE_TIMEOUT_SECONDS = 120


def missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.timeout(NODE_TIMEOUT_SECONDS + 30)
def test_js_sdk_against_the_target(target: Target) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (the JS SDK acceptance tests need node >= 20)")
    if not SDK_PACKAGE.is_file():
        missing(f"JS dependencies missing: run `npm ci` in {JS_DIR} (make test does)")
    env = {
        **os.environ,
        "AP_URL": target.url,
        "AP_API_KEY": target.api_key or "",
        "AP_SLOW_MODEL": SLOW_MODEL,
        "NO_COLOR": "1",
    }
    for variable in ("LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        env.pop(variable, None)  # the JS client falls back to these when no key is given
    done = subprocess.run(
        [str(node), "--test", "--test-reporter=spec"],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"node --test exited {done.returncode}:\n{output[-12000:]}"
    passed = re.search(r"\bpass (\d+)", output)
    assert passed and int(passed.group(1)) >= 5 and re.search(r"\bfail 0\b", output), output[-4000:]
