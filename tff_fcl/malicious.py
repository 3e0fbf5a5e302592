"""Simulated malicious clients: a client-work wrapper for update attacks, a data wrapper for poisoning.

`malicious_client_work(kind, fraction, scale, seed)` returns a ClientWorkProcess -> ClientWorkProcess
wrapper (same `next` types; the state becomes OrderedDict(inner=<inner state>, round_num=int32)).
In round t each participating client i is malicious with probability f, decided inside the TFF
computation by a stateless draw u_i ~ U[0, 1) seeded by (seed, t, c_i) and u_i < f, where c_i is a
fingerprint of the client's own dataset: the int64 sum of the bit patterns (float32 -> int32) of
every feature value of every element. Integer sums are exact and order-free, so c_i is the same
every round whatever the shuffling, needs no client index in the data (TFF's FedAvg baselines have
none) and identifies distinct clients with overwhelming probability. A malicious client replaces
its update u (everything it sends, e.g. FCL's model delta and m_i together) by
    "scaled":   s * u
    "gaussian": N(0, I) rescaled to ||u||   (global L2 norm over all leaves)
    "sign_flip": -u
and keeps its aggregation weight as it computed it (a stronger attacker could also claim the largest
weight; FCL's w_i is client-reported). The wrapper's measurements are the inner ones plus
`malicious_clients` (count this round). With fraction 0 no client is ever malicious and the results
are bitwise those of the inner client work.

Attack (d), "an update trained on attack traffic presented as benign", is a data substitution:
`AttackTrafficAsBenign(data, fraction, seed)` wraps a `FederatedData` so that a seeded, fixed set of
round(f * K) training clients trains on its device's attack rows (the test split's rows with label 1,
drawn with replacement when there are fewer than the client's n_i training rows) instead of its
benign rows; the attacker thus trains on exactly the traffic it wants hidden, the strongest version.
Everything else (validation, test, calibration rows) is the inner data's.
"""

import collections
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

ATTACKS = ("scaled", "gaussian", "sign_flip")
_ATTACK_DATA = 5


class MaliciousConfigError(ValueError):
  """Invalid malicious-client settings."""


def dataset_fingerprint(dataset: tf.data.Dataset) -> tf.Tensor:
  """int64 sum of the bit patterns of all float values (and of all integer values) in `dataset`."""
  def leaf_sum(leaf):
    if leaf.dtype.is_floating:
      leaf = tf.bitcast(tf.cast(leaf, tf.float32), tf.int32)
    return tf.reduce_sum(tf.cast(leaf, tf.int64))

  return dataset.reduce(tf.constant(0, tf.int64),
                        lambda total, element: total + tf.add_n([leaf_sum(l) for l in tf.nest.flatten(element)]))


def attack_update(update, kind: str, scale: float, seed: tf.Tensor):
  """The malicious version of `update` (a structure of float tensors); `seed` int64 [2] for "gaussian"."""
  if kind == "scaled":
    return tf.nest.map_structure(lambda u: u * tf.cast(scale, u.dtype), update)
  if kind == "sign_flip":
    return tf.nest.map_structure(tf.negative, update)
  leaves = tf.nest.flatten(update)
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=len(leaves)))
  noise = [tf.random.stateless_normal(tf.shape(u), s, dtype=u.dtype) for u, s in zip(leaves, seeds)]
  factor = tf.math.divide_no_nan(tf.linalg.global_norm(leaves), tf.linalg.global_norm(noise))
  return tf.nest.pack_sequence_as(update, [n * factor for n in noise])


def malicious_client_work(kind: str, fraction: float, *, scale: float = 10.0, seed: int = 0) -> Callable:
  """Returns a wrapper ClientWorkProcess -> ClientWorkProcess simulating malicious clients (docstring above)."""
  if kind not in ATTACKS:
    raise MaliciousConfigError(f"Unknown attack {kind!r}; expected one of {', '.join(ATTACKS)}.")
  if not 0 <= fraction <= 1:
    raise MaliciousConfigError(f"malicious fraction must be in [0, 1]. Found {fraction}.")

  def wrap(inner: tff.learning.templates.ClientWorkProcess) -> tff.learning.templates.ClientWorkProcess:
    inner_next = inner.next.type_signature
    weights_type, data_type = inner_next.parameter[1], inner_next.parameter[2]
    result_type = inner_next.result[1].member
    measurement_names = [name for name, _ in tff.structure.iter_elements(inner_next.result[2].member)]
    if None in measurement_names:
      raise MaliciousConfigError("the inner client work's measurements must be a named structure.")

    @tff.tensorflow.computation
    def initial_round():
      return tf.constant(0)

    @tff.federated_computation()
    def init_fn():
      return tff.federated_zip(collections.OrderedDict(
          inner=inner.initialize(), round_num=tff.federated_eval(initial_round, tff.SERVER)))

    @tff.tensorflow.computation(result_type, data_type.member, np.int32)
    def maybe_attack(client_result, data, round_num):
      fingerprint = dataset_fingerprint(data)
      round_seed = tf.cast(round_num, tf.int64) * 1_000_003 + seed
      draw = tf.random.stateless_uniform([], tf.stack([round_seed, fingerprint]))
      is_malicious = draw < fraction
      update = client_result.update
      attacked = attack_update(update, kind, scale, tf.stack([round_seed + 1, fingerprint]))
      update = tf.nest.map_structure(lambda a, u: tf.where(is_malicious, a, u), attacked, update)
      return (tff.learning.templates.ClientResult(update=update, update_weight=client_result.update_weight),
              tf.cast(is_malicious, tf.int32))

    @tff.tensorflow.computation(np.int32)
    def advance(round_num):
      return round_num + 1

    @tff.federated_computation(init_fn.type_signature.result, weights_type, data_type)
    def next_fn(state, weights, client_data):
      # Clients: the honest client work.
      inner_output = inner.next(state.inner, weights, client_data)
      # Server -> clients: the round; clients: malicious or not, and the attack.
      round_at_clients = tff.federated_broadcast(state.round_num)
      client_result, malicious = tff.federated_map(
          maybe_attack, (inner_output.result, client_data, round_at_clients))
      # Server.
      new_state = tff.federated_zip(collections.OrderedDict(
          inner=inner_output.state, round_num=tff.federated_map(advance, state.round_num)))
      measurements = collections.OrderedDict(
          (name, inner_output.measurements[name]) for name in measurement_names)
      measurements["malicious_clients"] = tff.federated_sum(malicious)
      return tff.templates.MeasuredProcessOutput(new_state, client_result, tff.federated_zip(measurements))

    return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)

  return wrap


class AttackTrafficAsBenign:
  """A `FederatedData` in which round(fraction * K) seeded clients train on their device's attack rows."""

  def __init__(self, data, fraction: float, seed: int = 0):
    if not 0 <= fraction <= 1:
      raise MaliciousConfigError(f"malicious fraction must be in [0, 1]. Found {fraction}.")
    self._data = data
    self.devices, self.client_ids, self.manifest = data.devices, data.client_ids, data.manifest
    candidates = [c for c in data.client_ids
                  if np.any(data.split_arrays(data.device_of(c), "test")[1] == 1)]
    count = min(int(round(fraction * len(data.client_ids))), len(candidates))
    rng = np.random.default_rng([seed, _ATTACK_DATA])
    chosen = set(rng.choice(len(candidates), size=count, replace=False).tolist()) if count else set()
    self.malicious_clients = tuple(c for i, c in enumerate(candidates) if i in chosen)
    self._seed = seed

  def device_of(self, client_id):
    return self._data.device_of(client_id)

  def num_train_examples(self, client_id):
    return self._data.num_train_examples(client_id)

  def split_arrays(self, device, split):
    return self._data.split_arrays(device, split)

  def attack_rows(self, client_id) -> np.ndarray:
    """The rows the malicious client trains on, float32 [n_i, 115] (seeded)."""
    x, labels, _ = self._data.split_arrays(self.device_of(client_id), "test")
    attacks = x[labels == 1]
    count = self._data.num_train_examples(client_id)
    rng = np.random.default_rng([self._seed, _ATTACK_DATA, self.client_ids.index(client_id)])
    return attacks[rng.choice(len(attacks), size=count, replace=count > len(attacks))]

  def train_dataset(self, client_id, *, batch_size: int, shuffle_seed: int) -> tf.data.Dataset:
    if client_id not in self.malicious_clients:
      return self._data.train_dataset(client_id, batch_size=batch_size, shuffle_seed=shuffle_seed)
    x = self.attack_rows(client_id)
    return tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=shuffle_seed).batch(batch_size)
