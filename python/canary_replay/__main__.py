"""`python -m canary_replay ARGS`: runs the binary with ARGS."""

import os
import sys

from canary_replay import binary

if __name__ == "__main__":
    path = binary()
    if sys.platform == "win32":
        import subprocess

        sys.exit(subprocess.call([path, *sys.argv[1:]]))
    os.execv(path, [path, *sys.argv[1:]])
