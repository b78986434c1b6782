"""ExecuTorch's and torchao's chatter kept off the user's console: optional CUDA kernels that do not load on a
CPU machine, deprecation notices, and the C++ runtime's CPU probing lines. Real errors still surface."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

_LOGGERS = ("torchao", "torch.utils._pytree", "executorch")


@contextlib.contextmanager
def quiet_python() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="This API is experimental")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """stderr (file descriptor 2, where the C++ runtime writes) held back; shown if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
