"""The TFF worker subprocess is stopped at interpreter exit (it would otherwise hang pipelines)."""
import subprocess
import sys
import textwrap

import psutil


def test_worker_binary_does_not_outlive_python():
  script = textwrap.dedent("""
      import numpy as np, psutil, os
      from tff_fcl import runtime
      runtime.install_worker_cleanup()
      import tensorflow_federated as tff

      @tff.tensorflow.computation(np.float32)
      def add_one(x):
        return x + 1

      assert add_one(1.0) == 2.0
      workers = [c.pid for c in psutil.Process(os.getpid()).children(recursive=True)
                 if any('worker_binary' in p for p in c.cmdline())]
      print(workers[0])
  """)
  # communicate() returns only when every holder of the pipe has closed it, worker included.
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  worker_pid = int(result.stdout.strip().splitlines()[-1])
  assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE, (
      f"worker_binary {worker_pid} outlived its Python parent")
