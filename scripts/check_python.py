"""Fails at once, with one line, when the interpreter cannot run tff-fcl's pinned stack.

Written to run under any Python (no f-strings), so that even a Python 2 gets the message.
"""
import sys

SUPPORTED = ((3, 9), (3, 11))

if not SUPPORTED[0] <= tuple(sys.version_info[:2]) <= SUPPORTED[1]:
  sys.exit(
      "tff-fcl needs Python 3.9-3.11 (tensorflow-federated 0.87 supports no other; the lock file is "
      "tested on 3.11), but %s is Python %s. Run `make install PYTHON=/path/to/python3.11`."
      % (sys.executable, sys.version.split()[0]))
