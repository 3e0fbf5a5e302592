"""Benchmark: FCL round time on TFF's local context, 1 worker and 2 workers, and gRPC bytes per round.

    python bench/bench_workers.py [--clients 90,900] [--rows_per_client 32] [--batch_size 16]
                                  [--setups local,1,2] [--repeats 2]

The workers are `python -m programs.worker` processes on localhost ports of this machine (started and
stopped by the benchmark), so 2 workers share this machine's cores with each other and with the
trainer: the numbers show the overhead of the remote path and of splitting, not a multi-machine speed-up.
Model: the mlp embedding network (d=8, p=4, hidden 16). Data are SYNTHETIC Gaussian rows [rows, 115].

Round time: median wall time of `--repeats` rounds of `process.next` after one warm-up round.
gRPC bytes per round: serialized protobuf bytes of all executor requests to and responses from the
workers during one timed round (mean over repeats), counted in `tff_fcl.remote`'s stub; this is the
message payload (client datasets as serialized tf.data graphs, model weights, computations), without
HTTP/2 framing. The local context also talks gRPC to its own worker_binary, which is not counted.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO_ROOT)

from tff_fcl import runtime  # pylint: disable=g-import-not-at-top

runtime.install_worker_cleanup()

import numpy as np  # pylint: disable=g-import-not-at-top
import portpicker  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

from programs import worker as worker_program  # pylint: disable=g-import-not-at-top
from tff_fcl import models  # pylint: disable=g-import-not-at-top
from tff_fcl import remote  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import build_fcl_process  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import with_client_index  # pylint: disable=g-import-not-at-top


def _network():
  return models.build_embedding_network("mlp", 8, 4, (16,))


def _synthetic_datasets(num_clients, rows_per_client, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  return [with_client_index(tf.data.Dataset.from_tensor_slices(
      rng.normal(size=(rows_per_client, 115)).astype(np.float32)).batch(batch_size), i)
          for i in range(num_clients)]


def _start_worker(log_dir):
  """Starts `programs.worker` on a free port; returns (HOST:PORT, process) once it accepts connections."""
  port = portpicker.pick_unused_port()
  return f"localhost:{port}", worker_program.spawn_worker(port, os.path.join(log_dir, f"worker_{port}.log"))


def _time_rounds(process, datasets, repeats, handle):
  """Median seconds per round and mean gRPC bytes (sent, received) per round after one warm-up round."""
  state = process.initialize()
  state = process.next(state, datasets).state
  times, sent, received = [], [], []
  for _ in range(repeats):
    if handle is not None:
      handle.reset_traffic()
    start = time.perf_counter()
    state = process.next(state, datasets).state
    times.append(time.perf_counter() - start)
    if handle is not None:
      traffic = handle.traffic().values()
      sent.append(sum(t.bytes_sent for t in traffic))
      received.append(sum(t.bytes_received for t in traffic))
  mean_or_none = lambda values: float(np.mean(values)) if values else None
  return float(np.median(times)), mean_or_none(sent), mean_or_none(received)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--clients", default="90,900", help="Comma-separated client counts.")
  parser.add_argument("--rows_per_client", type=int, default=32)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--setups", default="local,1,2", help="local and/or numbers of workers.")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--log_dir", default="/tmp/bench_workers_logs")
  args = parser.parse_args()
  client_counts = [int(c) for c in args.clients.split(",")]
  setups = args.setups.split(",")
  os.makedirs(args.log_dir, exist_ok=True)

  tf.keras.utils.set_random_seed(0)
  initial = tf.nest.map_structure(lambda v: v.numpy(),
                                  tff.learning.models.ModelWeights.from_model(_network()))
  workers = []
  try:
    needed = max([int(s) for s in setups if s != "local"], default=0)
    addresses = [_start_worker(args.log_dir) for _ in range(needed)]
    workers = [process for _, process in addresses]
    rows = []
    for num_clients in client_counts:
      process = build_fcl_process(_network, initial_weights=initial, num_clients=num_clients,
                                  config=FCLConfig())
      datasets = _synthetic_datasets(num_clients, args.rows_per_client, args.batch_size)
      for setup in setups:
        targets = [] if setup == "local" else [address for address, _ in addresses[:int(setup)]]
        with remote.remote_execution(targets) as handle:
          seconds, sent, received = _time_rounds(process, datasets, args.repeats, handle)
        rows.append((num_clients, "local context" if setup == "local" else f"{setup} worker(s)",
                     seconds, sent, received))
        print(f"  done: {rows[-1][1]}, {num_clients} clients: {seconds:.2f} s", file=sys.stderr, flush=True)
  finally:
    for process in workers:
      worker_program.stop_process(process)

  print(f"FCL round, mlp d=8 p=4, {args.rows_per_client} synthetic rows per client, batch "
        f"{args.batch_size}, median of {args.repeats} rounds after 1 warm-up; {os.cpu_count()} CPU cores")
  print(f"{'clients':>8} | {'setup':<14} | {'round s':>8} | {'gRPC MB sent/round':>18} | "
        f"{'gRPC MB recv/round':>18}")
  print("-" * 79)
  for num_clients, setup, seconds, sent, received in rows:
    mb = lambda b: "-" if b is None else f"{b / 1e6:.2f}"
    print(f"{num_clients:>8} | {setup:<14} | {seconds:>8.2f} | {mb(sent):>18} | {mb(received):>18}")


if __name__ == "__main__":
  main()
