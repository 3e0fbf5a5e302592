"""Fails at once, with one line, when the interpreter cannot run tff-fcl's pinned stack."""
import sys

SUPPORTED = ((3, 9), (3, 11))

if not SUPPORTED[0] <= sys.version_info[:2] <= SUPPORTED[1]:
  sys.exit(
      f"tff-fcl needs Python 3.9-3.11 (tensorflow-federated 0.87 supports no other; the lock file is "
      f"tested on 3.11), but {sys.executable} is Python {sys.version.split()[0]}. "
      "Run `make install PYTHON=/path/to/python3.11`."
  )
