"""canary-replay: offline replay of canary deployments of ML models.

The wheel carries the `canary-replay` binary; `canary_replay.ray` fans a replay's scoring out
over a Ray cluster.
"""

import os
import shutil
import sys
import sysconfig

__all__ = ["binary"]


def binary() -> str:
    """The path of the canary-replay binary this package installed (else the one on PATH)."""
    name = "canary-replay" + (".exe" if sys.platform == "win32" else "")
    schemes = [sysconfig.get_default_scheme()]
    if sys.version_info >= (3, 10):
        schemes.append(sysconfig.get_preferred_scheme("user"))
    for scheme in schemes:
        candidate = os.path.join(sysconfig.get_path("scripts", scheme=scheme), name)
        if os.path.isfile(candidate):
            return candidate
    found = os.environ.get("CANARY_REPLAY_BIN") or shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} is not installed next to this Python package (pip install canary-replay)")
