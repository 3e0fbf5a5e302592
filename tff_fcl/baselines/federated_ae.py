"""Federated baselines on the N-BaIoT autoencoder: TFF's FedAvg and FedProx.

    fedavg_ae    tff.learning.algorithms.build_weighted_fed_avg    (McMahan et al., AISTATS 2017)
    fedprox_ae   tff.learning.algorithms.build_weighted_fed_prox   (Li et al., MLSys 2020), mu = 0.01
    fedavg_ae with DP (`run.dp`): DP-FedAvg, TFF's `build_unweighted_fed_avg` with its
                 `DifferentiallyPrivateFactory` (`dp_aggregation.build_dp_fedavg`), Poisson-sampled
                 clients and the same accounting and released metrics as FCL under DP

A round, as TFF composes it:
    distributor  broadcast the autoencoder's ModelWeights                      @SERVER -> @CLIENTS
    client_work  local Adam epochs on benign rows x [B, 115], loss mean (x - x^)^2
                 (FedProx adds (mu / 2) ||theta - theta_global||^2); sends delta and n_i  @CLIENTS
    aggregator   sum(n_i * delta_i) / sum(n_i) (`MeanFactory`), or the `aggregator` given
    finalizer    server SGD step with the aggregated delta                     @SERVER
Client data are (x, x) pairs, the autoencoder's target being its input. With a `client_work_wrapper`
(e.g. simulated malicious clients, issue 7) the same process is composed from the same TFF pieces
(`build_model_delta_client_work` or FedProx's proximal client work, `build_apply_optimizer_finalizer`,
`compose_learning_process`) with the wrapper around the client work. Scores: reconstruction error of
the final global autoencoder, thresholded per device like every method (`detection.evaluate_detector`).
"""

import collections
import dataclasses
import os
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
# FedProx's client work is not exported under tff.learning.templates in TFF 0.87.
from tensorflow_federated.python.learning.templates import proximal_client_work

from tff_fcl import detection
from tff_fcl import dp_aggregation
from tff_fcl import experiment
from tff_fcl.baselines import autoencoder
from tff_fcl.baselines import results
from tff_fcl.data import schema

ALGORITHMS = ("fedavg_ae", "fedprox_ae")
PROXIMAL_STRENGTH = 0.01
_FEATURES_SPEC = tf.TensorSpec([None, schema.NUM_FEATURES], tf.float32)


def autoencoder_model_fn(seed: int) -> Callable[[], tff.learning.models.VariableModel]:
  """A no-arg factory of the autoencoder as a TFF model over (x, x) batches; weights seeded by `seed`."""
  def model_fn():
    return tff.learning.models.from_keras_model(
        autoencoder.build_autoencoder(seed), loss=autoencoder.MaskedMeanSquaredError(),
        input_spec=(_FEATURES_SPEC, _FEATURES_SPEC))
  return model_fn


def build_autoencoder_process(algorithm: str, model_fn: Callable, *, client_learning_rate: float,
                              server_learning_rate: float,
                              aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
                              client_work_wrapper: Optional[Callable] = None,
                              ) -> tff.learning.templates.LearningProcess:
  """FedAvg ("fedavg_ae") or FedProx ("fedprox_ae") of `model_fn`'s model, example-weighted."""
  if algorithm not in ALGORITHMS:
    raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}. Found {algorithm!r}.")
  client_optimizer = tff.learning.optimizers.build_adam(learning_rate=client_learning_rate)
  server_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=server_learning_rate)
  if client_work_wrapper is None:
    if algorithm == "fedavg_ae":
      return tff.learning.algorithms.build_weighted_fed_avg(
          model_fn, client_optimizer, server_optimizer, model_aggregator=aggregator)
    return tff.learning.algorithms.build_weighted_fed_prox(
        model_fn, PROXIMAL_STRENGTH, client_optimizer, server_optimizer, model_aggregator=aggregator)

  @tff.tensorflow.computation
  def initial_model_weights():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  weights_type = initial_model_weights.type_signature.result
  weighting = tff.learning.ClientWeighting.NUM_EXAMPLES
  if algorithm == "fedavg_ae":
    work = tff.learning.templates.build_model_delta_client_work(model_fn, client_optimizer, weighting)
  else:
    work = proximal_client_work.build_model_delta_client_work(
        model_fn, client_optimizer, weighting, PROXIMAL_STRENGTH,
        loop_implementation=tff.learning.LoopImplementation.DATASET_REDUCE)
  aggregation = (aggregator or tff.aggregators.MeanFactory()).create(
      weights_type.trainable, tff.TensorType(np.float32))
  return tff.learning.templates.compose_learning_process(
      initial_model_weights, tff.learning.templates.build_broadcast_process(weights_type),
      client_work_wrapper(work), aggregation,
      tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer, weights_type))


def train_federated_autoencoder(algorithm: str, run: experiment.RunConfig, data, *, local_epochs: int,
                                client_learning_rate: float, server_learning_rate: float,
                                aggregator=None, client_work_wrapper=None, progress=print) -> dict:
  """Trains `algorithm` on `data` (a FederatedData), evaluates, writes the run's files; returns the result."""
  if run.dp and (algorithm != "fedavg_ae" or aggregator is not None or client_work_wrapper is not None):
    raise ValueError("DP is available for fedavg_ae (DP-FedAvg) without another aggregator or client-work "
                     f"wrapper; not for {algorithm} as asked.")
  start = time.time()
  os.makedirs(run.output_dir, exist_ok=True)
  settings = experiment.check_or_write_config(run.output_dir, collections.OrderedDict(
      algorithm=algorithm, run=dataclasses.asdict(run), training=collections.OrderedDict(
          local_epochs=local_epochs, client_learning_rate=client_learning_rate,
          server_learning_rate=server_learning_rate,
          proximal_strength=PROXIMAL_STRENGTH if algorithm == "fedprox_ae" else 0.0)))
  client_ids = list(data.client_ids)
  private = experiment.PrivateTraining(run, len(client_ids)) if run.dp else None
  if private is not None:
    process = dp_aggregation.build_dp_fedavg(
        autoencoder_model_fn(run.seed), noise_multiplier=run.dp_noise_multiplier,
        clients_per_round=run.clients_per_round,
        client_optimizer=tff.learning.optimizers.build_adam(learning_rate=client_learning_rate),
        server_optimizer=tff.learning.optimizers.build_sgdm(learning_rate=server_learning_rate),
        clip_norm=run.dp_clip_norm)
  else:
    process = build_autoencoder_process(
        algorithm, autoencoder_model_fn(run.seed), client_learning_rate=client_learning_rate,
        server_learning_rate=server_learning_rate, aggregator=aggregator, client_work_wrapper=client_work_wrapper)

  def client_datasets(chosen, round_num):
    return [data.train_dataset(client_ids[i], batch_size=run.batch_size, shuffle_seed=run.seed * 100003 + round_num)
            .repeat(local_epochs).map(lambda x: (x, x)) for i in chosen]

  state = experiment.train_rounds(
      process, output_dir=run.output_dir, rounds=run.rounds, num_clients=len(client_ids),
      clients_per_round=run.clients_per_round, seed=run.seed, client_datasets_fn=client_datasets,
      round_metrics_fn=(lambda m: private.released(experiment.flatten_metrics(m))) if private
      else experiment.flatten_metrics,
      sampler=private.sample if private else None,
      extra_metrics_fn=private.epsilon_metrics if private else None, progress=progress)
  model = autoencoder.build_autoencoder(run.seed)
  process.get_model_weights(state).assign_weights_to(model)
  evaluation = detection.evaluate_detector(
      lambda device, train_x: lambda x: autoencoder.reconstruction_errors(model, x), data,
      target_fpr=run.target_fpr, threshold_rule=run.threshold_rule,
      window_target_fpr=run.window_target_fpr)
  return results.finish(
      run.output_dir, algorithm=algorithm, rounds=run.rounds, score="reconstruction_error",
      target_fpr=run.target_fpr, evaluation=evaluation, settings=settings, start_time=start, federated=True,
      bytes_per_round=results.bytes_per_client_per_round(
          results.parameter_count(model.trainable_variables),
          results.parameter_count(model.non_trainable_variables)),
      **({"privacy": private.summary()} if private else {}))
