"""Process-level runtime: TFF's worker subprocess lifetime and quiet TensorFlow logging.

TFF 0.87 runs computations on a C++ `worker_binary` that it starts as a child process on first use
(`executor_factory.local_cpp_executor_factory`). The child inherits stdout/stderr and is only stopped
from a `__del__` that interpreter shutdown does not reliably run, so it can outlive Python and hold a
shell pipeline or a CI job open. Every program calls `install_worker_cleanup()` first; the test suite
does the same from `tests/conftest.py`.
"""

import atexit
import gc
import os
import signal
import sys

import psutil

WORKER_BINARY_NAME = "worker_binary"
_installed = False


def _worker_children() -> list:
  try:
    children = psutil.Process(os.getpid()).children(recursive=True)
  except psutil.Error:
    return []
  workers = []
  for child in children:
    try:
      if any(WORKER_BINARY_NAME in part for part in child.cmdline()):
        workers.append(child)
    except psutil.Error:
      continue
  return workers


def _disable_service_manager_finalizers() -> None:
  """Turns off `__del__` of TFF's `ServiceManager` (the local worker's owner), once workers are stopped.

  That `__del__` evaluates `subprocess.Popen` during interpreter teardown, when module globals are
  already None, and prints "Exception ignored ... 'NoneType' object has no attribute 'Popen'" after
  every program's last line. `shutdown_tff_workers` has stopped the workers by then.
  """
  for obj in gc.get_objects():
    if type(obj).__name__ == "ServiceManager" and hasattr(type(obj), "__del__"):
      type(obj).__del__ = lambda self: None


def shutdown_tff_workers(timeout_s: float = 5.0) -> int:
  """Stops every `worker_binary` started by this process; returns how many were running."""
  workers = _worker_children()
  for worker in workers:
    try:
      worker.send_signal(signal.SIGINT)
    except psutil.Error:
      pass
  _, alive = psutil.wait_procs(workers, timeout=timeout_s)
  for worker in alive:
    try:
      worker.kill()
    except psutil.Error:
      pass
  psutil.wait_procs(alive, timeout=timeout_s)
  _disable_service_manager_finalizers()
  return len(workers)


def _exit_on_signal(signum, frame):
  del frame
  shutdown_tff_workers()
  sys.exit(128 + signum)


def install_worker_cleanup() -> None:
  """Stops TFF workers at interpreter exit and on SIGTERM/SIGHUP. Safe to call more than once."""
  global _installed
  if _installed:
    return
  _installed = True
  atexit.register(shutdown_tff_workers)
  for signum in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(signum) in (signal.SIG_DFL, None):
      signal.signal(signum, _exit_on_signal)


def quiet_tensorflow_logs() -> None:
  """Hides TensorFlow's C++ start-up chatter unless the user asked for it."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
