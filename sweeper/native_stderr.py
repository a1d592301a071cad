"""Native libraries' stderr held back: TensorFlow, TFLite and Ray write from C++ straight to file
descriptor 2 (absl banners, converter chatter, a client's retries), past Python's `sys.stderr` and
logging, so only swapping the descriptor keeps a command's or a library call's output clean.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

from .errors import SweeperError


@contextmanager
def quiet_native_stderr():
    """Hold back what native code (TensorFlow, TFLite, Ray) writes to stderr (absl banners, converter
    chatter) while a block runs; if the block fails with something other than a user error, the
    held-back text is shown, since it may say why."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except SweeperError:
            raise
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
