"""Native libraries' stderr chatter stays out of a command's output."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
from f2i_mobile.core.errors import F2IError, guarded

def command():
    os.write(2, b"Error in cpuinfo: failed to parse the list of possible processors\\n")
    os.write(2, b"progress 50%\\r")
    os.write(2, b"Warning in cpuinfo: no cache info\\nour own line\\n")
    os.write(2, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\\n")
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written "
                b"to STDERR\\nI0000 00:00:1796387150.725549   28809 port.cc:153] oneDNN custom "
                b"operations are on.\\n")
    os.write(2, b"quantizing 0%|")  # a bar, then LiteRT's line after it
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
    print("to stdout")
    raise F2IError("the one line")

sys.exit(guarded(command))
"""


def test_cpuinfo_lines_are_dropped_and_the_rest_kept(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 1 and r.stdout == b"to stdout\n"
    assert b"cpuinfo" not in r.stderr and b"absl" not in r.stderr and b"oneDNN" not in r.stderr
    assert r.stderr == (b"progress 50%\rour own line\nquantizing 0%|"
                        b"f2i-mobile: error: the one line\n")
