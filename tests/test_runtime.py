"""keep_freed_memory: glibc keeps freed blocks (no page faults on the next forward's activations); the
command-line entry points switch it on, the environment switch turns it off, importing the package does not."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys, torch
from hyperdet_hf import runtime
{setup}
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
a = torch.ones(64 * 2**20 // 4)
before = rss()
del a
print(runtime._applied, round(before - rss()))
"""

CLI = "from hyperdet_hf import cli\ntry:\n    cli.main(['detect', '--help'])\nexcept SystemExit:\n    pass"
TRAIN = "from hyperdet_hf import training\ntraining.main(['--train_data'])"


def _run(setup: str, **env) -> tuple[str, int]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(setup=setup)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    applied, dropped = proc.stdout.split()[-2:]
    return applied, int(dropped)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")


def test_keep_freed_memory_keeps_a_freed_64mib_block():
    assert _run("runtime.keep_freed_memory()") == ("True", 0)
    # glibc's default: the block was mmapped and goes back to the kernel when freed
    assert _run("") == ("None", 64)


def test_environment_switch_turns_it_off():
    assert _run("runtime.keep_freed_memory()", HYPERDET_KEEP_FREED_MEMORY="0") == ("False", 64)


@pytest.mark.parametrize("entry", [CLI, TRAIN], ids=["hyperdet-cli", "training"])
def test_entry_points_switch_it_on(entry):
    applied, dropped = _run(entry)
    assert applied == "True" and dropped == 0
