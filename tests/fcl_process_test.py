"""The composed FCL learning process: signature, two rounds with g, centralised equivalence, determinism.

Client data here are small synthetic arrays (random numbers, labelled as such): these tests check the
federated wiring, not detection quality.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_fcl import models
from tff_fcl.fcl import FCLConfig
from tff_fcl.fcl import build_fcl_process
from tff_fcl.fcl import local_training
from tff_fcl.fcl import with_client_index

CONFIG = FCLConfig(temperature=0.5, align_weight=0.5, client_learning_rate=1e-2)


def network_fn():
  return models.build_embedding_network("mlp", embedding_dim=8, projection_dim=4, hidden_units=(16,))


def initial_weights(seed=0):
  tf.keras.utils.set_random_seed(seed)
  return tf.nest.map_structure(lambda v: v.numpy(), tff.learning.models.ModelWeights.from_model(network_fn()))


def synthetic_rows(seed, n=96):
  return np.random.default_rng(seed).normal(loc=seed, size=(n, 115)).astype(np.float32)


def client_datasets(num_clients):
  return [with_client_index(tf.data.Dataset.from_tensor_slices(synthetic_rows(i)).batch(32), i)
          for i in range(num_clients)]


def build(num_clients, config=CONFIG):
  return build_fcl_process(network_fn, initial_weights=initial_weights(), num_clients=num_clients,
                           config=config)


def reference(weights):
  return np.asarray(weights.non_trainable[0])


def test_next_signature_has_reference_in_model_weights_and_sequence_data():
  process = build(3)
  weights_type = process.next.type_signature.parameter[0].member.global_model_weights
  assert weights_type.non_trainable[0].is_equivalent_to(tff.TensorType(np.float32, [4])), (
      "g is the network's only non-trainable weight, broadcast with the model")
  data_type = process.next.type_signature.parameter[1]
  assert data_type.placement == tff.CLIENTS
  assert isinstance(data_type.member, tff.SequenceType)
  metrics = process.next.type_signature.result.metrics.member.client_work
  assert metrics.distance_per_client.is_equivalent_to(tff.TensorType(np.float32, [3]))


def test_two_rounds_set_and_move_the_reference():
  process = build(3)
  state = process.initialize()
  np.testing.assert_array_equal(reference(state.global_model_weights), np.zeros(4, np.float32))
  first = process.next(state, client_datasets(3))
  g1 = reference(first.state.global_model_weights)
  assert np.linalg.norm(g1) == pytest.approx(1.0, abs=1e-5), "g is renormalised"
  assert first.metrics["client_work"]["weight_mean"] == pytest.approx(1.0), (
      "before g exists every client has d_i = 0")
  second = process.next(first.state, client_datasets(3))
  g2 = reference(second.state.global_model_weights)
  assert not np.allclose(g1, g2), "g moves with the clients' mean embeddings"
  work = second.metrics["client_work"]
  distances = work["distance_per_client"]
  assert np.all(distances > 0)
  np.testing.assert_allclose(work["distance_mean"], distances.mean(), rtol=1e-5)
  np.testing.assert_allclose(work["weight_mean"], np.mean(1 / (1 + distances)), rtol=1e-5)
  np.testing.assert_allclose(work["weight_min"], np.min(1 / (1 + distances)), rtol=1e-5)
  np.testing.assert_allclose(second.metrics["aggregator"]["weight_sum"], np.sum(1 / (1 + distances)),
                             rtol=1e-5)
  np.testing.assert_allclose(second.metrics["finalizer"]["reference"]["reference_shift"],
                             np.linalg.norm(g2 - g1), rtol=1e-5)
  assert second.state.client_work["round_num"] == 2


def test_partial_participation_reports_only_participants():
  process = build(4)
  datasets = client_datasets(4)
  output = process.next(process.initialize(), [datasets[1], datasets[3]])
  np.testing.assert_array_equal(output.metrics["client_work"]["participated"], [0, 1, 0, 1])


def test_one_client_equals_centralised_training():
  """One client, server lr 1, g = 0: the new global model is the client's locally trained model, and
  g becomes the normalised mean embedding of its clean rows under that model (momentum 0.5 from 0)."""
  process = build(1)
  state = process.initialize()
  rows = synthetic_rows(0)
  output = process.next(state, [with_client_index(tf.data.Dataset.from_tensor_slices(rows).batch(32), 0)])
  federated = process.get_model_weights(output.state)

  network = network_fn()
  state.global_model_weights.assign_weights_to(network)
  optimizer = tff.learning.optimizers.build_adam(learning_rate=CONFIG.client_learning_rate)
  dataset = tf.data.Dataset.from_tensor_slices(rows).batch(32)
  tf.function(local_training.train_locally)(network, optimizer, dataset, tf.zeros([4]),
                                            tf.constant([0, 0]), CONFIG)
  for got, expected in zip(federated.trainable, network.trainable_variables):
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6)
  # m_i: mean of u over the client's clean rows, each batch standardised with its own moments (Eq. 2).
  embedding_mean = np.concatenate([network(rows[i:i + 32]).numpy() for i in range(0, 96, 32)]).mean(axis=0)
  np.testing.assert_allclose(reference(federated), embedding_mean / np.linalg.norm(embedding_mean),
                             rtol=1e-4, atol=1e-6)


def test_same_seed_same_result():
  runs = []
  for _ in range(2):
    process = build(2)
    output = process.next(process.initialize(), client_datasets(2))
    runs.append((process.get_model_weights(output.state).trainable, output.metrics["client_work"]["loss"]))
  for a, b in zip(runs[0][0], runs[1][0]):
    np.testing.assert_array_equal(a, b)
  assert runs[0][1] == runs[1][1]


def test_config_validation_names_the_field():
  with pytest.raises(ValueError, match=r"FCLConfig.temperature must be positive. Found 0.0."):
    FCLConfig(temperature=0.0)
