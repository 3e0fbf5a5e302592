"""Malicious clients: exact attacks on a toy client work, f = 0 is the identity for FCL, data poisoning."""
import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import experiment
from tff_fcl import malicious
from tff_fcl.fcl import FCLConfig
from tff_fcl.fcl import client_work as client_work_lib
from tff_fcl.fcl import process as process_lib
from tests.experiment_test import SyntheticFederatedData

WEIGHTS_TYPE = tff.types.to_type(tff.learning.models.ModelWeights(
    trainable=[tff.TensorType(np.float32, [3])], non_trainable=[]))
DATA_TYPE = tff.SequenceType(tff.TensorType(np.float32, [None, 3]))


def toy_client_work():
  """Update = OrderedDict(delta=sum of the client's rows [3], extra=[2.0]); weight = its row count."""
  @tff.tensorflow.computation(WEIGHTS_TYPE, DATA_TYPE)
  def local(weights, data):
    del weights
    total = data.reduce(tf.zeros([3]), lambda s, x: s + tf.reduce_sum(x, axis=0))
    rows = data.reduce(0.0, lambda s, x: s + tf.cast(tf.shape(x)[0], tf.float32))
    update = collections.OrderedDict(delta=total, extra=tf.constant([2.0]))
    return tff.learning.templates.ClientResult(update=update, update_weight=rows), rows

  @tff.federated_computation()
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.federated_computation(init_fn.type_signature.result, tff.FederatedType(WEIGHTS_TYPE, tff.CLIENTS),
                             tff.FederatedType(DATA_TYPE, tff.CLIENTS))
  def next_fn(state, weights, data):
    result, rows = tff.federated_map(local, (weights, data))
    return tff.templates.MeasuredProcessOutput(
        state, result, tff.federated_zip(collections.OrderedDict(rows=tff.federated_sum(rows))))

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


WEIGHTS = tff.learning.models.ModelWeights(trainable=[np.zeros(3, np.float32)], non_trainable=[])
CLIENT_ROWS = [np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * i for i in range(6)]


def datasets():
  return [tf.data.Dataset.from_tensor_slices(x).batch(1) for x in CLIENT_ROWS]


def honest_updates():
  return [x.sum(axis=0) for x in CLIENT_ROWS]


def run_round(process, state=None):
  state = process.initialize() if state is None else state
  return process.next(state, [WEIGHTS] * len(CLIENT_ROWS), datasets())


@pytest.mark.parametrize("kind,expected", [("scaled", lambda u: 5.0 * u), ("sign_flip", np.negative)])
def test_every_client_attacks_exactly_when_fraction_is_one(kind, expected):
  process = malicious.malicious_client_work(kind, 1.0, scale=5.0, seed=3)(toy_client_work())
  output = run_round(process)
  for result, honest, rows in zip(output.result, honest_updates(), CLIENT_ROWS):
    np.testing.assert_allclose(result.update["delta"], expected(honest), rtol=1e-6)
    np.testing.assert_allclose(result.update["extra"], expected(np.array([2.0])), rtol=1e-6)
    assert result.update_weight == len(rows), "the weight is the client's own"
  assert output.measurements["malicious_clients"] == 6
  assert output.measurements["rows"] == 12, "inner measurements pass through"


def test_gaussian_attack_keeps_the_norm_and_changes_the_direction():
  process = malicious.malicious_client_work("gaussian", 1.0, seed=3)(toy_client_work())
  for result, honest in zip(run_round(process).result, honest_updates()):
    sent = np.concatenate([result.update["delta"], result.update["extra"]])
    np.testing.assert_allclose(np.linalg.norm(sent), np.linalg.norm(np.append(honest, 2.0)), rtol=1e-5)
    assert abs(np.dot(sent, np.append(honest, 2.0))) < 0.999 * np.linalg.norm(sent) ** 2


def test_zero_fraction_is_the_identity():
  plain = toy_client_work()
  wrapped = malicious.malicious_client_work("scaled", 0.0, scale=100.0)(plain)
  expected = plain.next(plain.initialize(), [WEIGHTS] * 6, datasets())
  output = run_round(wrapped)
  for got, want in zip(output.result, expected.result):
    np.testing.assert_array_equal(got.update["delta"], want.update["delta"])
  assert output.measurements["malicious_clients"] == 0


def test_malicious_choice_is_seeded_per_round_and_independent_of_row_order():
  process = malicious.malicious_client_work("sign_flip", 0.5, seed=11)(toy_client_work())

  def flags(output):
    return [bool(r.update["extra"][0] < 0) for r in output.result]

  first = run_round(process)
  again = run_round(process)
  assert flags(first) == flags(again), "same seed and round -> same malicious clients"
  assert flags(first) != flags(run_round(process, first.state)), "a new round draws again (seed 11)"
  forward = tf.data.Dataset.from_tensor_slices(CLIENT_ROWS[1]).batch(1)
  backward = tf.data.Dataset.from_tensor_slices(CLIENT_ROWS[1][::-1]).batch(2)
  assert malicious.dataset_fingerprint(forward) == malicious.dataset_fingerprint(backward)


def test_invalid_settings_are_refused():
  with pytest.raises(malicious.MaliciousConfigError, match="Unknown attack 'flip'"):
    malicious.malicious_client_work("flip", 0.1)
  with pytest.raises(malicious.MaliciousConfigError, match=r"malicious fraction must be in \[0, 1\]. Found 1.5."):
    malicious.malicious_client_work("scaled", 1.5)


def test_fcl_with_zero_fraction_wrapper_is_bitwise_equal():
  data = SyntheticFederatedData()
  run = experiment.RunConfig(data_dir="synthetic", output_dir="unused", batch_size=32, embedding_dim=8,
                             projection_dim=4, hidden_units=(8,))
  config = FCLConfig(client_learning_rate=1e-2)
  network_fn = experiment.network_fn_for(run)
  client_data = [client_work_lib.with_client_index(data.train_dataset(c, batch_size=32, shuffle_seed=1), i)
                 for i, c in enumerate(data.client_ids)]
  finals = []
  for wrapper in (None, malicious.malicious_client_work("scaled", 0.0, scale=50.0)):
    process = process_lib.build_fcl_process(network_fn, initial_weights=experiment.initial_weights(network_fn, 0),
                                            num_clients=2, config=config, client_work_wrapper=wrapper)
    state = process.initialize()
    for _ in range(2):
      output = process.next(state, client_data)
      state = output.state
    finals.append((process.get_model_weights(state), output.metrics["client_work"]["loss"]))
  for a, b in zip(tf.nest.flatten(finals[0][0]), tf.nest.flatten(finals[1][0])):
    np.testing.assert_array_equal(a, b)
  assert finals[0][1] == finals[1][1]


def test_attack_traffic_replaces_the_chosen_clients_training_rows():
  data = SyntheticFederatedData()
  poisoned = malicious.AttackTrafficAsBenign(data, 0.5, seed=0)
  assert len(poisoned.malicious_clients) == 1
  bad = poisoned.malicious_clients[0]
  good = [c for c in data.client_ids if c != bad][0]
  test_x, labels, _ = data.split_arrays(data.device_of(bad), "test")
  rows = np.concatenate(list(poisoned.train_dataset(bad, batch_size=16, shuffle_seed=0).as_numpy_iterator()))
  assert rows.shape == (64, 115)
  attack_set = {r.tobytes() for r in test_x[labels == 1]}
  assert all(r.tobytes() in attack_set for r in rows), "every training row is one of its attack rows"
  np.testing.assert_array_equal(poisoned.attack_rows(bad), poisoned.attack_rows(bad))
  honest = np.concatenate(list(poisoned.train_dataset(good, batch_size=16, shuffle_seed=0).as_numpy_iterator()))
  expected = np.concatenate(list(data.train_dataset(good, batch_size=16, shuffle_seed=0).as_numpy_iterator()))
  np.testing.assert_array_equal(honest, expected)
