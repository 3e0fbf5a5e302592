"""Remote execution: TFF computations run on `worker_binary` processes over gRPC, clients split per round.

TFF 0.87 ships the C++ executor service (`tensorflow_federated/data/worker_binary`, started by
`python -m programs.worker --port P`) but no helper that targets several of them. This module
assembles one from `tff.framework` / `tff.backends.native` pieces:

    one worker  HOST:PORT -> grpc.insecure_channel -> _WorkerStub (error naming, byte counting)
                -> tff.framework.RemoteExecutor, whose cardinalities ({CLIENTS: n_k}) are set
                   from each call's own argument (clients of the call, or 0 if it has none)
                -> tff.framework.AsyncExecutionContext (native compiler, TF arg/result transforms)
    K workers   tff.framework.MergeableCompExecutionContext over the K async contexts, fed with
                tff.backends.native.compile_to_mergeable_comp_form(comp) (compiled once per comp).

A computation such as `LearningProcess.next(state@SERVER, data@CLIENTS)` is compiled to
`MergeableCompForm` (up_to_merge, merge, after_merge): its aggregations (federated_mean/sum of the
model update and metrics) are lowered to one `federated_aggregate` and split at its merge. The
round's N clients are cut into K contiguous slices (sizes differ by at most one); worker k runs
up_to_merge on its slice (broadcast, local training, accumulate -> partial aggregate @SERVER); the
partials are merged pairwise on a worker, and after_merge (report, server update) runs once, on
the first slice's argument. This needs aggregations that do not depend on one another; every
`tff.learning` process built from a distributor, client work, one aggregator and a finalizer
qualifies (FedAvg, FCL with its Eq. 6 mean, clipping, DP, coordinate median). A computation that
TFF cannot split (one aggregation feeds another, as in median-norm bounding) runs whole on the
first worker, with a warning. Computations without clients work (initialize, get_model_weights)
run with 0 clients.

Same answers as one machine, to float32 rounding: the partial sums are added in a different order
(sum_k sum_{i in slice k} instead of sum_i), so results differ from the local run by a few ulps.

Faults: workers are probed with a gRPC ready-future at start (`WorkerUnreachableError`, one line
naming every unreachable HOST:PORT); a gRPC error during a computation becomes `WorkerFailedError`
naming the worker instead of TFF's endless retry of UNAVAILABLE (which would hang the round).
Workers hold no state between calls: the training state stays with the caller, whose program
state manager resumes from the last saved round once the worker is restarted.

Security: `worker_binary` listens on all interfaces without TLS or authentication. Run workers on
loopback reached through SSH tunnels, or on a private network behind a firewall; see
programs/worker.py.
"""

import collections
import contextlib
import dataclasses
import re
import threading
from typing import Iterator, Optional, Sequence

from absl import logging
import grpc
import tensorflow_federated as tff

from tensorflow_federated.proto.v0 import executor_pb2_grpc

_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
)
# Codes that mean the connection, not the computation, failed.
_CONNECTION_CODES = frozenset(
    (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED))
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


class InvalidWorkerAddressError(ValueError):
  """A worker address is not HOST:PORT."""


class WorkerUnreachableError(ValueError):
  """A worker did not accept a gRPC connection at start."""


class WorkerFailedError(RuntimeError):
  """A worker failed or disappeared while running a computation."""


@dataclasses.dataclass
class WorkerTraffic:
  """Serialized protobuf bytes of the executor requests sent to, and responses received from, a worker.

  This is the gRPC message payload (values, computations, references); HTTP/2 and gRPC framing add a
  few dozen bytes per call on top.
  """
  calls: int = 0
  bytes_sent: int = 0
  bytes_received: int = 0


def parse_workers(workers: Sequence[str]) -> list:
  """Validates HOST:PORT strings (IPv6 hosts in brackets); returns them stripped, in order."""
  parsed = []
  for address in workers:
    address = address.strip()
    match = _ADDRESS.match(address)
    if match is None or not 0 < int(match.group(2)) < 65536:
      raise InvalidWorkerAddressError(
          f"worker address {address!r} is not HOST:PORT with a port in 1..65535")
    if address in parsed:
      raise InvalidWorkerAddressError(f"worker address {address} is given twice")
    parsed.append(address)
  return parsed


class _WorkerStub(tff.framework.RemoteExecutorStub):
  """TFF's gRPC executor stub for one worker, naming the worker in errors and counting bytes."""

  def __init__(self, address: str, channel: grpc.Channel, traffic: WorkerTraffic):
    self._address = address
    self._stub = executor_pb2_grpc.ExecutorGroupStub(channel)
    self._traffic = traffic
    self._lock = threading.Lock()
    self._channel = channel

  def close(self) -> None:
    self._channel.close()

  def _call(self, method: str, request):
    try:
      response = getattr(self._stub, method)(request)
    except grpc.RpcError as e:
      raise self._failure(e) from None
    with self._lock:
      self._traffic.calls += 1
      self._traffic.bytes_sent += request.ByteSize()
      self._traffic.bytes_received += response.ByteSize()
    return response

  def _failure(self, error: grpc.RpcError) -> WorkerFailedError:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    if code in _CONNECTION_CODES:
      return WorkerFailedError(
          f"worker {self._address} stopped responding during a computation ({code.name}); "
          "is it still running?")
    details = (error.details() if isinstance(error, grpc.Call) else str(error)) or ""
    first_line = details.strip().splitlines()[0] if details.strip() else "no details"
    return WorkerFailedError(f"worker {self._address} failed a computation ({code.name}: {first_line})")

  def get_executor(self, request):
    return self._call("GetExecutor", request)

  def create_value(self, request):
    return self._call("CreateValue", request)

  def create_struct(self, request):
    return self._call("CreateStruct", request)

  def create_call(self, request):
    return self._call("CreateCall", request)

  def create_selection(self, request):
    return self._call("CreateSelection", request)

  def compute(self, request):
    return self._call("Compute", request)

  def dispose(self, request):
    # Runs from value finalizers; a lost worker has nothing left to free.
    try:
      return self._stub.Dispose(request)
    except grpc.RpcError as e:
      logging.debug("Dispose on worker %s failed: %s", self._address, e)
      return None

  def dispose_executor(self, request):
    # RemoteExecutor.close() expects raw gRPC errors here and ignores them.
    return self._stub.DisposeExecutor(request)

  @property
  def is_ready(self) -> bool:
    """Read only by TFF's local service manager; `_connect` checked the worker at start."""
    return True


def _connect(addresses: Sequence[str], timeout_s: float) -> list:
  """Opens one channel per worker; raises WorkerUnreachableError naming all that are not ready."""
  channels = [grpc.insecure_channel(address, options=_CHANNEL_OPTIONS) for address in addresses]
  ready = [grpc.channel_ready_future(channel) for channel in channels]
  unreachable = []
  for address, future in zip(addresses, ready):
    try:
      future.result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
      future.cancel()
      unreachable.append(address)
  if unreachable:
    for channel in channels:
      channel.close()
    raise WorkerUnreachableError(
        f"worker{'s' if len(unreachable) > 1 else ''} {', '.join(unreachable)} not reachable within "
        f"{timeout_s:g} s; start each with `python -m programs.worker --port PORT` on its host")
  return channels


def _worker_executor_factory(stub: _WorkerStub) -> tff.framework.ResourceManagingExecutorFactory:
  """Executors on one worker, one per cardinality, CLIENTS always set (0 when a call has no clients)."""

  def executor_for(cardinalities):
    cardinalities.setdefault(tff.CLIENTS, 0)
    executor = tff.framework.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor

  return tff.framework.ResourceManagingExecutorFactory(executor_for)


_NATIVE_CONTEXT_ARGS = dict(
    compiler_fn=tff.backends.native.desugar_and_transform_to_native,
    transform_args=tff.tensorflow.transform_args,
    transform_result=tff.tensorflow.transform_result,
)


class _WorkerPoolContext(tff.framework.SyncContext):
  """Splits each computation's clients across the workers, or runs it whole on the first worker.

  A computation is compiled once to `MergeableCompForm`. If TFF cannot (an aggregation depends on
  another one, e.g. median-norm bounding: median of norms -> broadcast bound -> mean), the whole
  computation runs on the first worker instead, with a warning. With a single worker nothing is
  split: after_merge takes the original argument, so a one-slice split would send the clients' data
  twice.
  """

  def __init__(self, factories: Sequence[tff.framework.ResourceManagingExecutorFactory],
               first_worker: str):
    self._split = tff.framework.MergeableCompExecutionContext(
        async_contexts=[tff.framework.AsyncExecutionContext(factory, **_NATIVE_CONTEXT_ARGS)
                        for factory in factories])
    self._whole = tff.framework.SyncExecutionContext(factories[0], **_NATIVE_CONTEXT_ARGS)
    self._first_worker = first_worker
    self._num_workers = len(factories)
    self._forms = {}

  def _mergeable_form(self, comp):
    if self._num_workers == 1:
      return None
    if comp not in self._forms:
      try:
        self._forms[comp] = tff.backends.native.compile_to_mergeable_comp_form(comp)
      except ValueError as e:
        logging.warning("Computation %s cannot be split across workers (%s); it runs whole on %s.",
                        comp.type_signature, str(e).splitlines()[0][:120], self._first_worker)
        self._forms[comp] = None
    return self._forms[comp]

  def invoke(self, comp, arg):
    form = self._mergeable_form(comp)
    if form is None:
      return self._whole.invoke(comp, arg)
    return self._split.invoke(form, arg)


class RemoteExecution:
  """A TFF execution context over worker processes, with per-worker traffic counters.

  Attributes:
    workers: the HOST:PORT strings, in the order clients are assigned (first slice -> first worker).
    context: the `tff.framework.SyncContext` to install (splits clients with TFF's
      `MergeableCompExecutionContext`).
  """

  def __init__(self, workers: Sequence[str], *, timeout_s: float = 10.0):
    """Connects to every worker (raising WorkerUnreachableError) and builds the context."""
    if timeout_s <= 0:
      raise ValueError(f"timeout_s must be positive. Found {timeout_s}.")
    self.workers = parse_workers(workers)
    if not self.workers:
      raise InvalidWorkerAddressError("no worker address given")
    channels = _connect(self.workers, timeout_s)
    self._traffic = collections.OrderedDict((address, WorkerTraffic()) for address in self.workers)
    self._stubs = [_WorkerStub(address, channel, self._traffic[address])
                   for address, channel in zip(self.workers, channels)]
    self.context = _WorkerPoolContext([_worker_executor_factory(stub) for stub in self._stubs],
                                      self.workers[0])

  def traffic(self) -> collections.OrderedDict:
    """HOST:PORT -> WorkerTraffic (a copy) accumulated since start or the last `reset_traffic()`."""
    return collections.OrderedDict(
        (address, dataclasses.replace(counts)) for address, counts in self._traffic.items())

  def reset_traffic(self) -> None:
    for counts in self._traffic.values():
      counts.calls = counts.bytes_sent = counts.bytes_received = 0

  def close(self) -> None:
    """Closes the gRPC channels; the workers keep running."""
    for stub in self._stubs:
      stub.close()


def set_remote_context(workers: Sequence[str], *, timeout_s: float = 10.0
                       ) -> Optional[RemoteExecution]:
  """Makes TFF run every computation on `workers` (HOST:PORT strings) from now on, in this thread.

  With an empty `workers` nothing changes (TFF's local context stays) and None is returned.

  Raises:
    InvalidWorkerAddressError: an address is not HOST:PORT.
    WorkerUnreachableError: a worker did not accept a connection within `timeout_s` seconds.
  """
  if not workers:
    return None
  remote = RemoteExecution(workers, timeout_s=timeout_s)
  tff.framework.set_default_context(remote.context)
  return remote


@contextlib.contextmanager
def remote_execution(workers: Sequence[str], *, timeout_s: float = 10.0
                     ) -> Iterator[Optional[RemoteExecution]]:
  """Runs the `with` body's TFF computations on `workers`; the previous context is back afterwards.

  With an empty `workers` the body runs in the current context and None is yielded.
  """
  if not workers:
    yield None
    return
  remote = RemoteExecution(workers, timeout_s=timeout_s)
  try:
    with tff.framework.get_context_stack().install(remote.context):
      yield remote
  finally:
    remote.close()
