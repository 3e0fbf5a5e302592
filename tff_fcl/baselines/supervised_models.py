"""Supervised attack classifiers (the paper's Table 1 references), small Keras models: x [B, 115] -> logit [B].

    mlp     115 -> 64 -> 64 -> 1                                     (ReLU)
    cnn1d   the row as 5 windows x 23 statistics (`schema.WINDOW_MAJOR_INDEX`), ordered by decay;
            two Conv1D(32, kernel 2) across the windows, global average + max pooling, 32 -> 1
    gnn     a graph over the feature structure: 23 nodes, one per statistic stream (family, statistic),
            each carrying its 5 window values [B, 23, 5]. Edges join streams of the same family
            (MI_dir, H, HH, HH_jit, HpHp) and streams of the same statistic across families (the
            `weight`s of all families, their `mean`s, ...), plus self-loops. Two GCN layers
            (Kipf & Welling, ICLR 2017)  H' = ReLU(D^-1/2 A D^-1/2 H W + b), then mean + max readout
    gat     the same graph, two graph-attention layers (Velickovic et al., ICLR 2018) with 2 heads:
            alpha_ij = softmax_{j in N(i)} LeakyReLU(a_s . W h_i + a_d . W h_j),  h_i' = ELU(sum_j alpha_ij W h_j)
The logit is the anomaly score (monotone in P(attack), without the sigmoid's ties at 0 and 1).
"""

import numpy as np
import tensorflow as tf

from tff_fcl.data import schema

MODELS = ("mlp", "cnn1d", "gnn", "gat")
_HIDDEN = 32


def stream_adjacency() -> np.ndarray:
  """float32 [23, 23]: 1 where two streams share a family or a statistic (self-loops included)."""
  families = [family for family, _ in schema.STREAMS]
  stats = [stat for _, stat in schema.STREAMS]
  n = len(schema.STREAMS)
  return np.array([[float(families[i] == families[j] or stats[i] == stats[j]) for j in range(n)]
                   for i in range(n)], np.float32)


def stream_nodes(x: tf.Tensor) -> tf.Tensor:
  """x [B, 115] -> node features [B, 23 streams, 5 windows]."""
  windows = tf.reshape(tf.gather(x, schema.WINDOW_MAJOR_INDEX, axis=-1),
                       [-1, schema.NUM_WINDOWS, schema.STATS_PER_WINDOW])
  return tf.transpose(windows, [0, 2, 1])


class GraphConvolution(tf.keras.layers.Layer):
  """H [B, N, F] -> ReLU(A_hat H W + b) [B, N, units], A_hat = D^-1/2 A D^-1/2 (A with self-loops)."""

  def __init__(self, adjacency: np.ndarray, units: int, **kwargs):
    super().__init__(**kwargs)
    degree = adjacency.sum(axis=1)
    self.normalized = tf.constant(adjacency / np.sqrt(np.outer(degree, degree)), tf.float32)
    self.dense = tf.keras.layers.Dense(units)

  def call(self, nodes):
    return tf.nn.relu(tf.einsum("ij,bjf->bif", self.normalized, self.dense(nodes)))


class GraphAttention(tf.keras.layers.Layer):
  """H [B, N, F] -> ELU(concat_k sum_j alpha^k_ij W^k h_j) [B, N, heads * units], alpha masked to edges."""

  def __init__(self, adjacency: np.ndarray, units: int, heads: int = 2, **kwargs):
    super().__init__(**kwargs)
    self.mask = tf.constant(adjacency > 0)
    self.units, self.heads = units, heads
    self.dense = tf.keras.layers.Dense(units * heads, use_bias=False)
    self.attend_source = tf.keras.layers.Dense(heads, use_bias=False)   # a_s . W h_i, per head
    self.attend_target = tf.keras.layers.Dense(heads, use_bias=False)   # a_d . W h_j, per head

  def call(self, nodes):
    hidden = self.dense(nodes)                                                     # [B, N, K*U]
    per_head = tf.reshape(hidden, tf.concat([tf.shape(hidden)[:2], [self.heads, self.units]], 0))
    logits = (tf.transpose(self.attend_source(hidden), [0, 2, 1])[..., :, None]
              + tf.transpose(self.attend_target(hidden), [0, 2, 1])[..., None, :])  # [B, K, N, N]
    logits = tf.where(self.mask, tf.nn.leaky_relu(logits, alpha=0.2), -1e9)
    alpha = tf.nn.softmax(logits, axis=-1)
    out = tf.einsum("bkij,bjku->biku", alpha, per_head)
    return tf.nn.elu(tf.reshape(out, tf.concat([tf.shape(out)[:2], [self.heads * self.units]], 0)))


def _readout(nodes: tf.Tensor) -> tf.Tensor:
  return tf.concat([tf.reduce_mean(nodes, axis=1), tf.reduce_max(nodes, axis=1)], axis=-1)


def build_supervised_model(name: str, seed: int) -> tf.keras.Model:
  """A built model x [B, 115] -> logit [B, 1]; initial weights seeded by `seed`."""
  if name not in MODELS:
    raise ValueError(f"supervised model must be one of {', '.join(MODELS)}. Found {name!r}.")
  tf.keras.utils.set_random_seed(seed)
  inputs = tf.keras.Input(shape=(schema.NUM_FEATURES,))
  if name == "mlp":
    hidden = tf.keras.layers.Dense(64, activation="relu")(inputs)
    hidden = tf.keras.layers.Dense(64, activation="relu")(hidden)
  elif name == "cnn1d":
    windows = tf.keras.layers.Lambda(lambda x: tf.transpose(stream_nodes(x), [0, 2, 1]))(inputs)
    conv = tf.keras.layers.Conv1D(_HIDDEN, 2, padding="same", activation="relu")(windows)
    conv = tf.keras.layers.Conv1D(_HIDDEN, 2, padding="same", activation="relu")(conv)
    hidden = tf.keras.layers.Lambda(_readout)(conv)
  else:
    adjacency = stream_adjacency()
    nodes = tf.keras.layers.Lambda(stream_nodes)(inputs)
    if name == "gnn":
      nodes = GraphConvolution(adjacency, _HIDDEN)(nodes)
      nodes = GraphConvolution(adjacency, _HIDDEN)(nodes)
    else:
      nodes = GraphAttention(adjacency, _HIDDEN // 2)(nodes)
      nodes = GraphAttention(adjacency, _HIDDEN // 2)(nodes)
    hidden = tf.keras.layers.Lambda(_readout)(nodes)
  hidden = tf.keras.layers.Dense(_HIDDEN, activation="relu")(hidden)
  return tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden), name=f"supervised_{name}")
