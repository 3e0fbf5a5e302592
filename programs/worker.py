"""Runs one TFF execution worker (TFF's bundled C++ `worker_binary`) for `--workers=HOST:PORT` training.

    python -m programs.worker --port=8000          # then: python -m programs.train --workers=localhost:8000,...

The worker is the gRPC executor service shipped inside the tensorflow_federated package
(tensorflow_federated/data/worker_binary). This program starts it, prints where it listens, lets its
log lines through to this terminal, and stops it on Ctrl-C / SIGTERM. The worker never outlives this
program: it is asked to die with it (Linux PR_SET_PDEATHSIG), even if this program is killed.

SECURITY: worker_binary listens on ALL network interfaces ([::]:PORT), without TLS and without any
authentication, and has no flag to change that. Anyone who can reach the port can run arbitrary
TensorFlow code on the machine. Safe setups:
  * loopback only: block the port from outside with a firewall (e.g. `ufw deny PORT`), and let
    remote trainers reach it through an SSH tunnel (`ssh -N -L 8000:localhost:8000 worker-host`,
    then `--workers=localhost:8000` on the trainer);
  * a private network (VPC, VPN) whose firewall admits the port only from the trainer's address.
Never expose the port to the internet.
"""

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags

_PORT = flags.DEFINE_integer(
    "port", None, "TCP port to serve on. The worker binds ALL interfaces without TLS or "
    "authentication (no flag changes that): firewall the port and use SSH tunnels or a private "
    "network, see the module docstring.", lower_bound=1, upper_bound=65535)
_MAX_CONCURRENT_CALLS = flags.DEFINE_integer(
    "max_concurrent_computation_calls", -1,
    "Limit on parallel calls of one computation (e.g. clients of one federated_map); <= 0 = none.")
_STARTUP_TIMEOUT_S = flags.DEFINE_float(
    "startup_timeout_s", 60.0, "Seconds to wait for the worker to accept connections.")
flags.mark_flag_as_required("port")

_PR_SET_PDEATHSIG = 1
_STOP_TIMEOUT_S = 10.0
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerStartError(ValueError):
  """The worker binary is missing or did not start listening."""


def worker_binary_path() -> str:
  """Path of tensorflow_federated/data/worker_binary, found without importing TensorFlow."""
  spec = importlib.util.find_spec("tensorflow_federated")
  if spec is None or not spec.submodule_search_locations:
    raise WorkerStartError("tensorflow_federated is not installed in this Python environment")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data", "worker_binary")
  if not os.access(path, os.X_OK):
    raise WorkerStartError(f"{path}: TFF's worker binary is missing or not executable")
  return path


def _die_with_parent(parent_pid: int):
  """Returns a preexec_fn that makes the child receive SIGKILL when this process dies."""

  def preexec():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # The parent died before prctl took effect.
      os._exit(1)  # pylint: disable=protected-access

  return preexec


def _check_port_free(port: int) -> None:
  with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
    # SO_REUSEADDR ignores TIME_WAIT leftovers of a previous worker but not a live listener.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("::", port))
    except OSError as e:
      raise WorkerStartError(f"port {port} is not free ({e.strerror})") from None


def _accepts_connections(port: int) -> bool:
  try:
    with socket.create_connection(("localhost", port), timeout=1.0):
      return True
  except OSError:
    return False


def wait_until_listening(process: subprocess.Popen, port: int, timeout_s: float, *, name: str,
                         interrupted=lambda: False) -> bool:
  """Waits until `process` (called `name` in errors) accepts connections on localhost:`port`;
  False if `interrupted()` first.

  Raises:
    WorkerStartError: the process exited, or did not listen within `timeout_s`.
  """
  deadline = time.monotonic() + timeout_s
  while not _accepts_connections(port):
    if process.poll() is not None:
      raise WorkerStartError(f"{name} exited with code {process.returncode} before listening "
                             f"on port {port}")
    if interrupted():
      return False
    if time.monotonic() > deadline:
      raise WorkerStartError(f"{name} did not listen on port {port} within {timeout_s:g} s")
    time.sleep(0.1)
  return True


def spawn_worker(port: int, log_path: str, *, timeout_s: float = 60.0) -> subprocess.Popen:
  """Starts `python -m programs.worker --port=PORT` (output to `log_path`) and returns it once it
  listens; for tests and benchmarks, which stop it with `stop_process`."""
  with open(log_path, "w") as log:
    process = subprocess.Popen([sys.executable, "-m", "programs.worker", f"--port={port}"],
                               cwd=_REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  try:
    wait_until_listening(process, port, timeout_s, name="programs.worker")
  except WorkerStartError:
    stop_process(process)
    raise
  return process


def stop_process(process: subprocess.Popen) -> None:
  """SIGTERM (SIGINT is ignored when started from a background shell job), then SIGKILL."""
  if process.poll() is not None:
    return
  process.terminate()
  try:
    process.wait(_STOP_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()


def run_worker(port: int, *, max_concurrent_computation_calls: int = -1,
               startup_timeout_s: float = 60.0) -> int:
  """Serves until SIGINT/SIGTERM (returns 0) or until the binary exits on its own (returns its code).

  Raises:
    WorkerStartError: no binary, port taken, or not listening within `startup_timeout_s`.
  """
  binary = worker_binary_path()
  _check_port_free(port)
  stop_requested = []

  def request_stop(signum, frame):
    del frame
    stop_requested.append(signum)

  previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
  # Own process group: a terminal Ctrl-C reaches only this program, which then stops the worker.
  process = subprocess.Popen(
      [binary, f"--port={port}", f"--max_concurrent_computation_calls={max_concurrent_computation_calls}"],
      stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent(os.getpid()), process_group=0)
  try:
    if not wait_until_listening(process, port, startup_timeout_s, name="worker_binary",
                                interrupted=lambda: bool(stop_requested)):
      return 0
    print(f"TFF worker (pid {process.pid}) listening on [::]:{port}, i.e. ALL interfaces, no TLS; "
          f"train with --workers=HOST:{port}. Ctrl-C stops it.", flush=True)
    while not stop_requested and process.poll() is None:
      time.sleep(0.2)
    if stop_requested:
      print(f"stopping TFF worker on port {port}", flush=True)
      return 0
    return process.returncode
  finally:
    stop_process(process)
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    code = run_worker(_PORT.value, max_concurrent_computation_calls=_MAX_CONCURRENT_CALLS.value,
                      startup_timeout_s=_STARTUP_TIMEOUT_S.value)
  except WorkerStartError as error:
    raise SystemExit(f"error: {error}") from None
  if code:
    raise SystemExit(f"error: worker_binary on port {_PORT.value} exited with code {code}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
