"""Baselines: the autoencoder, the graph layers and the held-out split against numpy; every method trains.

The data are `SyntheticFederatedData` from experiment_test (random numbers, labelled synthetic):
these tests check that each method runs end to end and reports its metrics, not detection quality.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from experiment_test import SyntheticFederatedData  # pylint: disable=g-bad-import-order
from tff_fcl import baselines
from tff_fcl import experiment
from tff_fcl.baselines import federated_ae
from tff_fcl.baselines import results
from tff_fcl.baselines import supervised_models
from tff_fcl.data import schema
from tff_fcl.fcl import FCLConfig

FCL = FCLConfig(client_learning_rate=1e-2)


def tiny_run(output_dir, rounds=1):
  return experiment.RunConfig(data_dir="synthetic", output_dir=str(output_dir), rounds=rounds, batch_size=32,
                              embedding_dim=8, projection_dim=4, hidden_units=(16,))


def test_autoencoder_has_the_nbaiot_layer_sizes_and_scores_mean_squared_error():
  assert baselines.autoencoder.layer_sizes(115) == (87, 58, 38, 29, 38, 58, 87)
  model = baselines.build_autoencoder(seed=3)
  assert [layer.units for layer in model.layers[1:]] == [87, 58, 38, 29, 38, 58, 87, 115]
  assert model.layers[0].name == "impute", "the first layer imputes missing (NaN) features"
  x = np.random.default_rng(0).normal(size=(5, 115)).astype(np.float32)
  expected = np.mean((model(x).numpy() - x) ** 2, axis=1)
  np.testing.assert_allclose(baselines.reconstruction_errors(model, x), expected, rtol=1e-6)


def test_bytes_per_client_per_round_is_the_stated_formula():
  sizes = (115, 87, 58, 38, 29, 38, 58, 87, 115)
  parameters = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
  model = baselines.build_autoencoder(seed=0)
  assert results.parameter_count(model.trainable_variables) == parameters
  # Broadcast all weights, upload the delta and one weight; float32.
  assert results.bytes_per_client_per_round(parameters, 0) == 4 * (2 * parameters + 1)
  assert results.bytes_per_client_per_round(10, 16, extra_upload=16) == 4 * (26 + 27)


def test_stream_graph_joins_same_family_and_same_statistic():
  adjacency = supervised_models.stream_adjacency()
  streams = list(schema.STREAMS)
  assert adjacency.shape == (23, 23) and np.array_equal(adjacency, adjacency.T)
  assert np.all(np.diag(adjacency) == 1)
  index = streams.index
  assert adjacency[index(("MI_dir", "weight")), index(("HpHp", "weight"))] == 1   # same statistic
  assert adjacency[index(("HH", "pcc")), index(("HH", "radius"))] == 1            # same family
  assert adjacency[index(("MI_dir", "mean")), index(("HpHp", "pcc"))] == 0


def test_stream_nodes_carry_each_streams_five_window_values():
  x = np.arange(2 * 115, dtype=np.float32).reshape(2, 115)
  nodes = supervised_models.stream_nodes(tf.constant(x)).numpy()
  assert nodes.shape == (2, 23, 5)
  hh_pcc = [schema.FEATURE_INDEX[f"HH_{w}_pcc"] for w in schema.WINDOWS]
  np.testing.assert_array_equal(nodes[1, schema.STREAMS.index(("HH", "pcc"))], x[1, hh_pcc])


def test_graph_convolution_and_attention_match_numpy():
  adjacency = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], np.float32)
  h = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
  gcn = supervised_models.GraphConvolution(adjacency, 5)
  out = gcn(h).numpy()
  w, b = [v.numpy() for v in gcn.dense.weights]
  degree = adjacency.sum(1)
  a_hat = adjacency / np.sqrt(np.outer(degree, degree))
  np.testing.assert_allclose(out, np.maximum(np.einsum("ij,bjf->bif", a_hat, h @ w + b), 0), rtol=1e-5, atol=1e-6)

  gat = supervised_models.GraphAttention(adjacency, units=3, heads=2)
  out = gat(h).numpy()
  w, a_s, a_d = gat.dense.kernel.numpy(), gat.attend_source.kernel.numpy(), gat.attend_target.kernel.numpy()
  wh = h @ w                                                   # [B, N, 6]
  expected = np.zeros((2, 3, 6), np.float32)
  for batch in range(2):
    for head in range(2):
      s, d = wh[batch] @ a_s[:, head], wh[batch] @ a_d[:, head]
      e = s[:, None] + d[None, :]
      e = np.where(e > 0, e, 0.2 * e)
      e = np.where(adjacency > 0, e, -np.inf)
      alpha = np.exp(e - e.max(1, keepdims=True))
      alpha /= alpha.sum(1, keepdims=True)
      expected[batch, :, head * 3:(head + 1) * 3] = alpha @ wh[batch][:, head * 3:(head + 1) * 3]
  expected = np.where(expected > 0, expected, np.expm1(expected))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_held_out_attacks_moves_a_seeded_share_of_attack_rows_out_of_the_test_split():
  data = SyntheticFederatedData()
  view = baselines.HeldOutAttacks(data, fraction=0.25, seed=4)
  for device in data.devices:
    x, labels, kinds = data.split_arrays(device, "test")
    test_x, test_labels, _ = view.split_arrays(device, "test")
    train_attacks, train_kinds = view.attack_training_rows(device)
    assert len(train_attacks) == 8 and np.all(train_kinds == 1), "a quarter of 32 attack rows"
    assert int(test_labels.sum()) == 24 and int((test_labels == 0).sum()) == 32, "benign test rows kept"
    rows = {tuple(r) for r in np.concatenate([test_x, train_attacks])}
    assert rows == {tuple(r) for r in x}, "the two parts are a partition of the test split"
    assert view.split_arrays(device, "val")[0] is data.split_arrays(device, "val")[0]
  again = baselines.HeldOutAttacks(data, fraction=0.25, seed=4)
  np.testing.assert_array_equal(again.attack_training_rows("dev_a")[0], view.attack_training_rows("dev_a")[0])
  with pytest.raises(ValueError, match=r"attack training fraction must be in \(0, 1\). Found 1.0."):
    baselines.HeldOutAttacks(data, fraction=1.0)


@pytest.mark.parametrize("algorithm", baselines.ALGORITHMS)
def test_every_method_trains_and_reports_the_shared_result_keys(tmp_path, algorithm):
  data = baselines.HeldOutAttacks(SyntheticFederatedData(), 0.5, 0)
  result = baselines.run_algorithm(algorithm, tiny_run(tmp_path), data, fcl_config=FCL, progress=lambda _: None)
  assert result["algorithm"] == algorithm
  for key in ("rounds", "score", "target_fpr", "pooled", "per_client", "per_attack", "thresholds",
              "pooled_by_scorer", "config", "wall_time_s", "federated", "bytes_per_client_per_round"):
    assert key in result, f"{algorithm} result lacks {key}"
  assert set(result["per_client"]) == {"dev_a", "dev_b"}
  for metric in ("accuracy", "auc", "f1", "recall", "precision", "fpr"):
    assert 0.0 <= result["pooled"][metric] <= 1.0, (algorithm, metric, result["pooled"][metric])
  assert result["pooled"]["tp"] + result["pooled"]["fn"] == 32, "16 held-out attack rows per device"
  assert result["federated"] == (algorithm in baselines.FEDERATED)
  assert math.isnan(result["bytes_per_client_per_round"]) != result["federated"]
  assert (tmp_path / "eval.json").exists() and (tmp_path / "summary.md").read_text().startswith(f"# {algorithm}:")


def test_fedavg_composed_with_an_identity_wrapper_equals_tffs_build_weighted_fed_avg():
  model_fn = federated_ae.autoencoder_model_fn(seed=0)
  data = SyntheticFederatedData()
  datasets = [data.train_dataset(c, batch_size=32, shuffle_seed=1).map(lambda x: (x, x)) for c in data.client_ids]
  finals = []
  for wrapper in (None, lambda work: work):
    process = federated_ae.build_autoencoder_process("fedavg_ae", model_fn, client_learning_rate=1e-2,
                                                     server_learning_rate=1.0, client_work_wrapper=wrapper)
    state = process.next(process.initialize(), datasets).state
    finals.append(process.get_model_weights(state).trainable)
  for built, composed in zip(*finals):
    np.testing.assert_array_equal(built, composed)


def test_unknown_algorithm_and_aggregator_for_a_reference_are_refused(tmp_path):
  with pytest.raises(ValueError, match=r"Unknown algorithm 'fedsgd'; expected one of fcl, "):
    baselines.run_algorithm("fedsgd", tiny_run(tmp_path), SyntheticFederatedData(), fcl_config=FCL)
  with pytest.raises(ValueError, match="mlp is not federated: it takes no aggregator or client-work wrapper."):
    baselines.run_algorithm("mlp", tiny_run(tmp_path), SyntheticFederatedData(), fcl_config=FCL,
                            client_work_wrapper=lambda work: work)


def test_autoencoder_loss_and_score_ignore_missing_features():
  """Without NaN both are the plain MSE; a NaN feature is imputed at the input and left out of both."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tff_fcl.baselines import autoencoder  # pylint: disable=g-import-not-at-top
  model = autoencoder.build_autoencoder(0)
  x = np.random.default_rng(0).normal(size=(4, 115)).astype(np.float32)
  reconstruction = model(x).numpy()
  expected = np.mean((reconstruction - x) ** 2, axis=1)
  np.testing.assert_allclose(autoencoder.reconstruction_errors(model, x), expected, rtol=1e-5)
  loss = autoencoder.MaskedMeanSquaredError()
  np.testing.assert_allclose(loss(x, reconstruction).numpy(), expected.mean(), rtol=1e-5)
  missing = x.copy()
  missing[:, :15] = np.nan
  imputed = x.copy()
  imputed[:, :15] = 0.0
  with_nan = model(missing).numpy()
  np.testing.assert_array_equal(with_nan, model(imputed).numpy(), err_msg="NaN is imputed with 0 at the input")
  present = np.mean((with_nan[:, 15:] - x[:, 15:]) ** 2, axis=1)
  np.testing.assert_allclose(autoencoder.reconstruction_errors(model, missing), present, rtol=1e-5)
  np.testing.assert_allclose(loss(tf.constant(missing), with_nan).numpy(), present.mean(), rtol=1e-5)
