"""InfoNCE (Eq. 3), alignment (Eq. 4) and consistency weight (Eq. 5) against numpy references."""
import numpy as np
import pytest
import tensorflow as tf

from tff_fcl.fcl import losses


def _unit(rows):
  rows = np.asarray(rows, dtype=np.float64)
  return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def numpy_info_nce(u1, u2, tau):
  u = np.concatenate([u1, u2])
  n = len(u1)
  total = 0.0
  for a in range(2 * n):
    positive = (a + n) % (2 * n)
    sims = np.array([u[a] @ u[k] / tau for k in range(2 * n) if k != a])
    total += -(u[a] @ u[positive] / tau) + np.log(np.sum(np.exp(sims)))
  return total / (2 * n)


def test_info_nce_matches_numpy():
  rng = np.random.default_rng(0)
  u1, u2 = _unit(rng.normal(size=(4, 3))), _unit(rng.normal(size=(4, 3)))
  got = losses.info_nce_loss(tf.constant(u1), tf.constant(u2), 0.5).numpy()
  np.testing.assert_allclose(got, numpy_info_nce(u1, u2, 0.5), rtol=1e-10)


def test_info_nce_known_answer_two_rows():
  # Two rows, identical views: each anchor has sim 1 with its positive and 0 with both negatives
  # (orthogonal rows), so l = -1/tau + log(e^{1/tau} + 2 e^0).
  u = np.eye(2)
  tau = 0.25
  expected = -4.0 + np.log(np.exp(4.0) + 2.0)
  got = losses.info_nce_loss(tf.constant(u), tf.constant(u), tau).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_info_nce_gradient_matches_finite_differences():
  rng = np.random.default_rng(1)
  u1, u2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  x1 = tf.Variable(u1)
  with tf.GradientTape() as tape:
    loss = losses.info_nce_loss(x1, tf.constant(u2), 0.7)
  grad = tape.gradient(loss, x1).numpy()
  numeric = np.zeros_like(u1)
  for index in np.ndindex(u1.shape):
    step = np.zeros_like(u1)
    step[index] = 1e-6
    numeric[index] = (numpy_info_nce(u1 + step, u2, 0.7) - numpy_info_nce(u1 - step, u2, 0.7)) / 2e-6
  np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_alignment_loss_matches_numpy():
  u = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
  g = np.array([0.6, 0.8])
  expected = np.mean([0.4 ** 2 + 0.8 ** 2, 0.6 ** 2 + 0.2 ** 2, 0.0])
  np.testing.assert_allclose(losses.alignment_loss(tf.constant(u), tf.constant(g)).numpy(), expected)


@pytest.mark.parametrize("distance, weight", [(0.0, 1.0), (1.0, 0.5), (3.0, 0.25)])
def test_consistency_weight(distance, weight):
  assert losses.consistency_weight(tf.constant(distance)).numpy() == pytest.approx(weight)
