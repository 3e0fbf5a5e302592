"""Remote execution on `programs.worker` processes (TFF worker_binary over gRPC on localhost ports).

Every worker a test starts is stopped in a `finally`, with its worker_binary child, whatever the test
outcome. Equality with the local run is to float32 rounding: the two workers' partial sums are added
in a different order than one machine's single sum, so weights and metrics agree to rtol 1e-5,
atol 1e-6 (float32 eps is 1.2e-7; a round adds a few dozen terms).
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import portpicker
import psutil
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from programs import worker as worker_program
from tff_fcl import models
from tff_fcl import remote
from tff_fcl.fcl import FCLConfig
from tff_fcl.fcl import build_fcl_process
from tff_fcl.fcl import with_client_index

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RTOL = 1e-5
_ATOL = 1e-6
_NUM_CLIENTS = 5
_ROUNDS = 2


class _Workers:
  """Starts `python -m programs.worker` processes and stops them (and their worker_binary) on close."""

  def __init__(self, log_dir):
    self._log_dir = log_dir
    self._processes = []

  def start(self, port=None) -> tuple:
    port = port or portpicker.pick_unused_port()
    log_path = os.path.join(self._log_dir, f"worker_{port}_{len(self._processes)}.log")
    process = worker_program.spawn_worker(port, log_path)
    self._processes.append(process)
    return f"localhost:{port}", process

  def close(self):
    for process in self._processes:
      try:
        children = psutil.Process(process.pid).children(recursive=True)
      except psutil.Error:
        children = []
      worker_program.stop_process(process)
      _, alive = psutil.wait_procs(children, timeout=5)
      for child in alive:
        child.kill()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
  pool = _Workers(str(tmp_path_factory.mktemp("workers")))
  try:
    yield pool
  finally:
    pool.close()


@pytest.fixture(scope="module")
def two_workers(workers):
  return [workers.start()[0], workers.start()[0]]


def _synthetic_fedavg_process_and_data():
  """FedAvg on a 4 -> 3 dense softmax layer, 5 clients of 8 labelled synthetic rows (batches of 4)."""

  def model_fn():
    keras_model = tf.keras.Sequential([
        tf.keras.layers.InputLayer((4,)),
        tf.keras.layers.Dense(3)])
    keras_model.layers[0].set_weights([np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3),
                                       np.zeros(3, np.float32)])
    return tff.learning.models.from_keras_model(
        keras_model, loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)))

  process = tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.1))
  rng = np.random.default_rng(0)
  data = [tf.data.Dataset.from_tensor_slices(
      (rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, size=8).astype(np.int32))
  ).batch(4) for _ in range(_NUM_CLIENTS)]
  return process, data


def _synthetic_fcl_process_and_data():
  """FCL with the mlp embedding network (d=8, p=4), 5 clients of 16 synthetic [*, 115] rows."""
  model_fn = lambda: models.build_embedding_network("mlp", 8, 4, (16,))
  tf.keras.utils.set_random_seed(0)
  initial = tf.nest.map_structure(lambda v: v.numpy(),
                                  tff.learning.models.ModelWeights.from_model(model_fn()))
  process = build_fcl_process(model_fn, initial_weights=initial, num_clients=_NUM_CLIENTS,
                              config=FCLConfig())
  rng = np.random.default_rng(0)
  data = [with_client_index(tf.data.Dataset.from_tensor_slices(
      rng.normal(size=(16, 115)).astype(np.float32)).batch(8), i) for i in range(_NUM_CLIENTS)]
  return process, data


def _train(process, data, state=None, rounds=_ROUNDS):
  """Runs `rounds` rounds in the current TFF context; returns (state, model weights, metrics list)."""
  state = process.initialize() if state is None else state
  metrics = []
  for _ in range(rounds):
    output = process.next(state, data)
    state = output.state
    metrics.append(output.metrics)
  return state, process.get_model_weights(state), metrics


def _assert_weights_close(actual, expected):
  for a, e in zip(tf.nest.flatten(actual), tf.nest.flatten(expected)):
    np.testing.assert_allclose(a, e, rtol=_RTOL, atol=_ATOL)


@pytest.fixture(scope="module")
def fedavg():
  process, data = _synthetic_fedavg_process_and_data()
  return process, data, _train(process, data)


@pytest.mark.parametrize("workers_arg, message", [
    (["localhost"], "worker address 'localhost' is not HOST:PORT with a port in 1..65535"),
    (["localhost:0"], "worker address 'localhost:0' is not HOST:PORT with a port in 1..65535"),
    (["a:1", " a:1"], "worker address a:1 is given twice"),
])
def test_bad_worker_address_is_one_line(workers_arg, message):
  with pytest.raises(remote.InvalidWorkerAddressError) as error:
    remote.RemoteExecution(workers_arg)
  assert str(error.value) == message


def test_parse_workers_accepts_hosts_and_ipv6():
  assert remote.parse_workers(["localhost:8000", " 10.0.0.2:80", "[::1]:9"]) == [
      "localhost:8000", "10.0.0.2:80", "[::1]:9"]


def test_no_workers_keeps_the_local_context():
  before = tff.framework.get_context_stack().current
  assert remote.set_remote_context([]) is None
  with remote.remote_execution([]) as handle:
    assert handle is None
    assert tff.framework.get_context_stack().current is before
  assert tff.framework.get_context_stack().current is before


@tff.tensorflow.computation(np.float32, np.float32)
def _squared_difference(x, mean):
  return tf.square(x - mean)


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _sum_and_sum_of_squared_deviations(x):
  """<sum_i x_i, sum_i (x_i - mean)^2>: the second aggregation depends on the first (not splittable)."""
  mean_at_clients = tff.federated_broadcast(tff.federated_mean(x))
  return tff.federated_sum(x), tff.federated_sum(
      tff.federated_map(_squared_difference, (x, mean_at_clients)))


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _sum(x):
  return tff.federated_sum(x)


def test_splittable_sum_uses_both_workers(two_workers):
  with remote.remote_execution(two_workers) as handle:
    assert _sum([1.0, 2.0, 3.0, 4.0, 5.0]) == 15.0
    traffic = handle.traffic()
  assert all(traffic[address].calls > 0 for address in two_workers), traffic


def test_dependent_aggregations_run_whole_on_the_first_worker(two_workers):
  with remote.remote_execution(two_workers) as handle:
    total, deviations = _sum_and_sum_of_squared_deviations([1.0, 2.0, 3.0, 4.0])
    traffic = handle.traffic()
  assert (total, deviations) == (10.0, 5.0)  # mean 2.5: 2.25 + 0.25 + 0.25 + 2.25.
  assert traffic[two_workers[0]].calls > 0 and traffic[two_workers[1]].calls == 0, traffic


def test_unreachable_worker_is_named(two_workers):
  dead = f"localhost:{portpicker.pick_unused_port()}"
  with pytest.raises(remote.WorkerUnreachableError) as error:
    remote.RemoteExecution([two_workers[0], dead], timeout_s=0.5)
  assert str(error.value) == (
      f"worker {dead} not reachable within 0.5 s; start each with "
      "`python -m programs.worker --port PORT` on its host")


def test_fedavg_on_two_workers_equals_local(fedavg, two_workers):
  process, data, (_, local_weights, local_metrics) = fedavg
  before = tff.framework.get_context_stack().current
  with remote.remote_execution(two_workers) as handle:
    _, remote_weights, remote_metrics = _train(process, data)
    traffic = handle.traffic()
  assert tff.framework.get_context_stack().current is before, "context not restored"
  _assert_weights_close(remote_weights, local_weights)
  for remote_round, local_round in zip(remote_metrics, local_metrics):
    train_remote, train_local = remote_round["client_work"]["train"], local_round["client_work"]["train"]
    assert train_remote["num_examples"] == train_local["num_examples"] == _NUM_CLIENTS * 8
    np.testing.assert_allclose(train_remote["loss"], train_local["loss"], rtol=_RTOL)
  for address in two_workers:  # Both workers ran clients: each received client datasets.
    assert traffic[address].bytes_sent > 10_000, f"{address} got no client work: {traffic}"


def test_fcl_on_two_workers_equals_local(two_workers):
  process, data = _synthetic_fcl_process_and_data()
  _, local_weights, local_metrics = _train(process, data)
  with remote.remote_execution(two_workers):
    _, remote_weights, remote_metrics = _train(process, data)
  _assert_weights_close(remote_weights, local_weights)
  for remote_round, local_round in zip(remote_metrics, local_metrics):
    for key in ("loss", "weight_mean", "distance_per_client", "num_examples"):
      np.testing.assert_allclose(remote_round["client_work"][key], local_round["client_work"][key],
                                 rtol=_RTOL, atol=_ATOL, err_msg=key)


def test_killed_worker_is_named_and_training_resumes_from_saved_state(fedavg, workers, tmp_path):
  process, data, (_, local_weights, _) = fedavg
  state_manager = tff.program.FileProgramStateManager(str(tmp_path / "program_state"))
  (first, _), (second, second_worker) = workers.start(), workers.start()
  with remote.remote_execution([first, second]):
    state, _, _ = _train(process, data, rounds=1)
    asyncio.run(state_manager.save(state, 1))
    # SIGKILL of programs.worker: its worker_binary must die with it (PR_SET_PDEATHSIG).
    binary = psutil.Process(second_worker.pid).children()[0]
    second_worker.send_signal(signal.SIGKILL)
    second_worker.wait()
    binary.wait(10)
    with pytest.raises(remote.WorkerFailedError) as error:
      process.next(state, data)
  assert str(error.value) == (
      f"worker {second} stopped responding during a computation (UNAVAILABLE); is it still running?")

  # "Rerun after restarting the worker": a new context resumes from the saved round.
  workers.start(port=int(second.split(":")[1]))
  loaded, version = asyncio.run(state_manager.load_latest(process.initialize()))
  assert version == 1
  with remote.remote_execution([first, second]):
    _, resumed_weights, _ = _train(process, data, state=loaded, rounds=1)
  _assert_weights_close(resumed_weights, local_weights)


def test_killed_single_worker_is_named(fedavg, workers):
  process, data, _ = fedavg
  address, worker = workers.start()
  with remote.remote_execution([address]):
    state = process.initialize()
    worker.send_signal(signal.SIGTERM)
    worker.wait()
    with pytest.raises(remote.WorkerFailedError) as error:
      process.next(state, data)
  assert str(error.value) == (
      f"worker {address} stopped responding during a computation (UNAVAILABLE); is it still running?")


def test_worker_program_refuses_a_taken_port():
  with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
    taken.bind(("::", 0))
    taken.listen()
    port = taken.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "programs.worker", f"--port={port}"], cwd=_REPO_ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == f"error: port {port} is not free (Address already in use)"
