"""Benchmark: the cost of TFF in one FCL round, and round time against the number of clients.

    python bench/bench_round.py [--rows_per_client 2000] [--batch_size 128] [--clients 9,90,900]

1. Examples per second of one FCL round over 9 clients (one local epoch each) through the TFF
   process, against the same model, loss, optimizer and number of steps run as a plain TensorFlow
   loop (`local_training.train_locally` in a tf.function per client, then the weighted mean of the
   deltas in numpy). The ratio is TFF's overhead (target: at most 2x).
2. Round time at 9, 90 and 900 clients holding the same total number of rows (the 9 devices split into
   1, 10 and 100 shards each, as `--shards_per_device` does).
Data are SYNTHETIC (Gaussian rows, one mean per device): the benchmark measures speed, not detection.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tff_fcl import runtime  # pylint: disable=g-import-not-at-top

runtime.install_worker_cleanup()

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

from tff_fcl import experiment  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import FCLConfig  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import build_fcl_process  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import local_training  # pylint: disable=g-import-not-at-top
from tff_fcl.fcl import with_client_index  # pylint: disable=g-import-not-at-top

DEVICES = 9


def synthetic_clients(total_rows_per_device: int, shards: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  clients = []
  for device in range(DEVICES):
    rows = rng.normal(device * 0.1, 1.0, size=(total_rows_per_device, 115)).astype(np.float32)
    clients.extend(np.array_split(rows, shards))
  return clients


def datasets_for(clients, batch_size):
  return [with_client_index(tf.data.Dataset.from_tensor_slices(rows).batch(batch_size), i)
          for i, rows in enumerate(clients)]


def tff_round_seconds(clients, batch_size, config, network_fn, repeats):
  process = build_fcl_process(network_fn, initial_weights=experiment.initial_weights(network_fn, 0),
                              num_clients=len(clients), config=config)
  state = process.initialize()
  datasets = datasets_for(clients, batch_size)
  state = process.next(state, datasets).state  # warm-up: tracing and the worker's first call
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state = process.next(state, datasets).state
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def plain_round_seconds(clients, batch_size, config, network_fn, repeats):
  network = network_fn()
  start_weights = [v.numpy() for v in network.trainable_variables]
  optimizer = tff.learning.optimizers.build_adam(learning_rate=config.client_learning_rate)
  reference = tf.zeros([network.projection.units])
  train = tf.function(local_training.train_locally)
  embed = tf.function(local_training.mean_embedding)
  datasets = [tf.data.Dataset.from_tensor_slices(rows).batch(batch_size) for rows in clients]

  def one_round():
    deltas = []
    for index, dataset in enumerate(datasets):
      for variable, value in zip(network.trainable_variables, start_weights):
        variable.assign(value)
      train(network, optimizer, dataset, reference, tf.constant([0, index]), config)
      embed(network, dataset)
      deltas.append([s - v.numpy() for s, v in zip(start_weights, network.trainable_variables)])
    return [np.mean(parts, axis=0) for parts in zip(*deltas)]

  one_round()  # warm-up: tracing
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    one_round()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows_per_device", type=int, default=2000)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--clients", default="9,90,900", help="comma-separated client counts (multiples of 9)")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  config = FCLConfig()
  run = experiment.RunConfig(data_dir="synthetic", output_dir="unused")
  network_fn = experiment.network_fn_for(run)

  clients = synthetic_clients(args.rows_per_device, 1)
  rows = sum(len(c) for c in clients)
  tff_s = tff_round_seconds(clients, args.batch_size, config, network_fn, args.repeats)
  plain_s = plain_round_seconds(clients, args.batch_size, config, network_fn, args.repeats)
  print(f"One FCL round, 9 clients x {args.rows_per_device} rows (synthetic), batch {args.batch_size}, "
        f"model {run.encoder} {run.hidden_units} -> {run.embedding_dim} -> {run.projection_dim}")
  print("| loop | round time (s) | examples/s | time ratio to plain TF |")
  print("|---|---:|---:|---:|")
  print(f"| plain TensorFlow | {plain_s:.2f} | {rows / plain_s:,.0f} | 1.00 |")
  print(f"| TFF process | {tff_s:.2f} | {rows / tff_s:,.0f} | {tff_s / plain_s:.2f} |")
  print()
  print(f"Round time against clients (same {DEVICES * args.rows_per_device} synthetic rows in total)")
  print("| clients | rows per client | round time (s) | examples/s |")
  print("|---:|---:|---:|---:|")
  for count in (int(c) for c in args.clients.split(",")):
    if count % DEVICES:
      raise SystemExit(f"error: --clients values must be multiples of {DEVICES}. Found {count}.")
    shards = synthetic_clients(args.rows_per_device, count // DEVICES)
    seconds = tff_round_seconds(shards, args.batch_size, config, network_fn, 1)
    print(f"| {count} | {len(shards[0])} | {seconds:.2f} | {rows / seconds:,.0f} |")


if __name__ == "__main__":
  main()
