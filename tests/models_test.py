"""Encoders and the embedding network: shapes, Eq. 2, g as a weight, the missing-feature mask."""
import numpy as np
import pytest
import tensorflow as tf

from tff_fcl import models
from tff_fcl.models import encoders


@pytest.mark.parametrize("kind", models.ENCODERS)
def test_encoder_maps_rows_to_embeddings(kind):
  encoder = models.build_encoder(kind, embedding_dim=6, hidden_units=(8,))
  assert encoder(tf.zeros([3, 115])).shape == (3, 6)


def test_unknown_encoder_is_named():
  with pytest.raises(ValueError, match=r"Unknown encoder 'rnn'; expected one of mlp, windows."):
    models.build_encoder("rnn", 4)


def test_standardisation_is_eq2_with_batch_or_given_moments():
  network = models.build_embedding_network("mlp", 4, 3, (8,))
  z = tf.constant(np.random.default_rng(0).normal(size=(16, 4)), tf.float32)
  mean, variance = z.numpy().mean(0), z.numpy().var(0)
  np.testing.assert_allclose(network.standardize_embedding(z), (z.numpy() - mean) / np.sqrt(variance + 1e-6),
                             rtol=1e-4, atol=1e-5)
  given = (tf.ones([4]), 4.0 * tf.ones([4]))
  np.testing.assert_allclose(network.standardize_embedding(z, given), (z.numpy() - 1) / np.sqrt(4 + 1e-6),
                             rtol=1e-5, atol=1e-6)


def test_outputs_are_unit_vectors_and_g_is_the_only_non_trainable_weight():
  network = models.build_embedding_network("windows", 4, 3, (8,))
  u = network(tf.random.normal([10, 115], seed=1)).numpy()
  np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
  assert [v.name for v in network.non_trainable_variables] == [network.reference.name]
  assert network.reference_index() == 0


@pytest.mark.parametrize("kind", models.ENCODERS)
def test_missing_mask_reaches_the_model(kind):
  """NaN (missing) and 0 give different embeddings; without the mask the input width is 115."""
  tf.keras.utils.set_random_seed(0)
  encoder = models.build_encoder(kind, 4, (8,), missing_mask=True)
  x = np.random.default_rng(0).normal(size=(2, 115)).astype(np.float32)
  with_nan, with_zero = x.copy(), x.copy()
  with_nan[:, :10], with_zero[:, :10] = np.nan, 0.0
  out_nan, out_zero = encoder(with_nan).numpy(), encoder(with_zero).numpy()
  assert np.all(np.isfinite(out_nan))
  assert not np.allclose(out_nan, out_zero), "the mask tells missing from zero"
  values, present = encoders.split_missing(tf.constant(with_nan))
  np.testing.assert_array_equal(values.numpy()[:, :10], 0.0)
  np.testing.assert_array_equal(present.numpy()[:, :10], 0.0)
  np.testing.assert_array_equal(present.numpy()[:, 10:], 1.0)
