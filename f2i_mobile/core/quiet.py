"""Silence the chatter of the ML stack (torchao's optional CUDA kernels, TensorFlow's and absl's
C++ logs, cpuinfo's complaints about /sys), so a command's output is its own."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator


def quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    for name in ("torchao", "torch._dynamo", "torch.utils._pytree", "torch.onnx", "coremltools", "nncf",
                 "absl", "jax", "executorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*register_constant.*")
    # ai_edge_quantizer calibrates through an interpreter that keeps every tensor, on purpose
    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")


# Lines native libraries print straight to the process's stderr, bypassing Python's logging:
# the cpuinfo library (inside torch, ExecuTorch's threadpool, ONNX Runtime and LiteRT) reports
# every /sys file it cannot read, once per library, on machines and containers that hide them;
# ExecuTorch's threadpool reads CPU model files the same way; TensorFlow (under the LiteRT
# converter and quantizer) logs through absl before anyone set absl's level, which ignores
# TF_CPP_MIN_LOG_LEVEL: its info lines start "I0000 00:00:"; LiteRT's interpreter announces
# its XNNPACK delegate once per process.
NATIVE_NOISE = (b"Error in cpuinfo", b"Warning in cpuinfo", b"[cpuinfo_utils.cpp:",
                b"WARNING: All log messages before absl::InitializeLog()", b"I0000 00:00:",
                b"INFO: Created TensorFlow Lite XNNPACK delegate")


@contextlib.contextmanager
def native_stderr_filtered(noise: tuple[bytes, ...] = NATIVE_NOISE) -> Iterator[None]:
    """Route file descriptor 2 through a pipe and drop the lines that start with `noise`;
    everything else (progress bars mid-line included) is passed on as it arrives."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    forwarder = threading.Thread(target=_forward, args=(read, saved, noise), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the forwarder drains and stops
        forwarder.join(timeout=5)
        os.close(saved)


def _forward(read: int, out: int, noise: tuple[bytes, ...]) -> None:
    pending = b""
    # Lines end in \n, or in \r where a progress bar redraws itself; a noise line that a
    # library prints right after a bar (no line break between) starts a line of its own.
    ends = re.compile(rb"(?<=[\r\n])|(?=" + b"|".join(re.escape(n) for n in noise) + rb")")
    while chunk := os.read(read, 65536):
        *lines, pending = ends.split(pending + chunk)
        kept = b"".join(line for line in lines if not line.startswith(noise))
        # A partial line goes out now unless it may still become noise.
        if pending and not any(n.startswith(pending[:len(n)]) for n in noise):
            kept, pending = kept + pending, b""
        if kept:
            os.write(out, kept)
    if pending and not pending.startswith(noise):
        os.write(out, pending)
    os.close(read)
