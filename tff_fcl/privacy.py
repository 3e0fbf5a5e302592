"""Client-level (epsilon, delta) accounting for DP training, and the client sampler it assumes.

Unit of privacy: the client, i.e. one device, or one device shard when `--shards_per_device=K > 1`
(a device split into K shards is then protected only as a group of K clients). Neighbouring data
sets differ by adding or removing all the data of one client (add/remove-one adjacency).

Sampling assumption: Poisson sampling. In every round each of the N clients takes part independently
with probability q = clients_per_round / N, so a round has K ~ Binomial(N, q) clients (expected
clients_per_round, possibly none). `poisson_sample_clients` draws exactly this, seeded.

Mechanism per round (tff_fcl/dp_aggregation.py, DP-FedAvg alike): the sum of the sampled clients'
clipped (L2 norm <= C) and weighted (w_i in [0, 1]) updates plus N(0, (z C)^2 I) noise, divided by a
fixed denominator. One client changes that sum by at most C, so a round is the Poisson-subsampled
Gaussian mechanism with noise multiplier z, and T rounds are its T-fold composition:

    event = SelfComposed(PoissonSampled(q, Gaussian(z)), T)

Epsilon at a given delta comes from `dp_accounting`: the RDP accountant (Renyi DP of the sampled
Gaussian, Mironov et al. 2019) or the PLD accountant (privacy loss distributions, tighter; Doroshenko
et al. 2022). An empty round is still a round of the mechanism (its output is pure noise) and is
counted; see `poisson_sample_clients`.

This module imports only numpy and dp_accounting (no TensorFlow), so that the budget CLI starts fast.
"""

import dataclasses
import math

import dp_accounting
import numpy as np

UNIT_OF_PRIVACY = ("the client (one device, or one device shard if devices are sharded); "
                   "add/remove-one-client adjacency")
SAMPLING_ASSUMPTION = ("Poisson sampling: each round every client takes part independently "
                       "with probability q = clients_per_round / num_clients")
ACCOUNTANTS = ("rdp", "pld")
# Discretisation of the PLD accountant's privacy loss (dp_accounting's default); its error on
# epsilon is of this order.
PLD_VALUE_DISCRETIZATION = 1e-4
# Calibrated noise multipliers are within this (absolute) tolerance of the optimum, and never give
# an epsilon above the target.
CALIBRATION_TOLERANCE = 1e-4
_MAX_NOISE_MULTIPLIER = 1e4


class PrivacyParameterError(ValueError):
  """A privacy or sampling parameter is out of range (one-line message naming it and its value)."""


@dataclasses.dataclass(frozen=True)
class PrivacySpec:
  """The client-level DP setting of a training run (everything the accountant needs).

  Attributes:
    noise_multiplier: z, Gaussian noise std on the weighted sum is z * C (C the clip norm).
    clients_per_round: expected number of clients per round (the sampling rate times num_clients).
    num_clients: N, the client population (devices or device shards).
    rounds: T, the number of rounds (empty rounds included).
    delta: the target delta.
  """
  noise_multiplier: float
  clients_per_round: float
  num_clients: int
  rounds: int
  delta: float

  def __post_init__(self):
    _check_nonnegative_finite(self.noise_multiplier, "noise_multiplier")
    if not self.num_clients >= 1 or int(self.num_clients) != self.num_clients:
      raise PrivacyParameterError(f"num_clients must be a positive integer. Found {self.num_clients}.")
    if not 0 < self.clients_per_round <= self.num_clients:
      raise PrivacyParameterError(
          f"clients_per_round must be in (0, num_clients={self.num_clients}]. "
          f"Found {self.clients_per_round}.")
    if not self.rounds >= 0 or int(self.rounds) != self.rounds:
      raise PrivacyParameterError(f"rounds must be a non-negative integer. Found {self.rounds}.")
    _check_delta(self.delta)

  @property
  def sampling_probability(self) -> float:
    """q = clients_per_round / num_clients."""
    return self.clients_per_round / self.num_clients


def dp_event(noise_multiplier: float, sampling_probability: float, rounds: int) -> dp_accounting.DpEvent:
  """SelfComposed(PoissonSampled(q, Gaussian(z)), T): T rounds of the Poisson-sampled Gaussian."""
  _check_nonnegative_finite(noise_multiplier, "noise_multiplier")
  _check_sampling_probability(sampling_probability)
  return dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(
          sampling_probability, dp_accounting.GaussianDpEvent(noise_multiplier)),
      int(rounds))


def make_accountant(accountant: str) -> dp_accounting.PrivacyAccountant:
  """A fresh `dp_accounting` accountant ('rdp' or 'pld') for add/remove-one adjacency."""
  relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
  if accountant == "rdp":
    return dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
  if accountant == "pld":
    return dp_accounting.pld.PLDAccountant(
        neighboring_relation=relation, value_discretization_interval=PLD_VALUE_DISCRETIZATION)
  raise PrivacyParameterError(f"accountant must be one of {', '.join(ACCOUNTANTS)}. Found {accountant!r}.")


def compute_epsilon(noise_multiplier: float, sampling_probability: float, rounds: int, delta: float,
                    accountant: str = "pld") -> float:
  """Client-level epsilon at `delta` after `rounds` Poisson-sampled Gaussian rounds.

  Args:
    noise_multiplier: z >= 0; z = 0 gives math.inf (no privacy) unless nothing is released.
    sampling_probability: q in [0, 1].
    rounds: T >= 0; T = 0 gives 0.
    delta: in (0, 1).
    accountant: 'rdp' or 'pld'.

  Returns:
    epsilon (float, math.inf when the mechanism is not private).
  """
  _check_delta(delta)
  event = dp_event(noise_multiplier, sampling_probability, rounds)
  if rounds == 0 or sampling_probability == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  return float(make_accountant(accountant).compose(event).get_epsilon(delta))


def epsilon_of(spec: PrivacySpec, accountant: str = "pld") -> float:
  """`compute_epsilon` for a `PrivacySpec`."""
  return compute_epsilon(spec.noise_multiplier, spec.sampling_probability, spec.rounds, spec.delta,
                         accountant)


def calibrate_noise_multiplier(target_epsilon: float, sampling_probability: float, rounds: int,
                               delta: float, accountant: str = "pld") -> float:
  """The smallest noise multiplier z (within CALIBRATION_TOLERANCE) whose epsilon is <= target.

  A bracket [z_lo, z_hi] is found by doubling/halving from z = 1, then `dp_accounting`'s
  `calibrate_dp_mechanism` (Brent's method) finds the root; it guarantees epsilon(z) <= target.
  """
  _check_positive_finite(target_epsilon, "target_epsilon")
  _check_delta(delta)
  if not rounds >= 1 or int(rounds) != rounds:
    raise PrivacyParameterError(f"rounds must be a positive integer. Found {rounds}.")
  _check_sampling_probability(sampling_probability)
  if sampling_probability == 0:
    raise PrivacyParameterError("sampling_probability is 0: no client is ever used, any z works.")
  make_accountant(accountant)  # Validates the name before any search.

  def epsilon(z):
    return compute_epsilon(z, sampling_probability, rounds, delta, accountant)

  z_hi = 1.0
  while epsilon(z_hi) > target_epsilon:
    z_hi *= 2.0
    if z_hi > _MAX_NOISE_MULTIPLIER:
      raise PrivacyParameterError(
          f"target_epsilon={target_epsilon} needs a noise multiplier above {_MAX_NOISE_MULTIPLIER}.")
  z_lo = z_hi / 2.0
  while epsilon(z_lo) <= target_epsilon:
    z_hi = z_lo
    z_lo /= 2.0
    if z_lo < CALIBRATION_TOLERANCE:
      return z_hi
  return float(dp_accounting.calibrate_dp_mechanism(
      lambda: make_accountant(accountant),
      lambda z: dp_event(z, sampling_probability, rounds),
      target_epsilon, delta,
      bracket_interval=dp_accounting.ExplicitBracketInterval(z_lo, z_hi),
      tol=CALIBRATION_TOLERANCE))


def poisson_sample_clients(num_clients: int, q: float, seed: int, round_num: int) -> np.ndarray:
  """The clients of one round under Poisson sampling: each index kept independently with prob. q.

  Deterministic in (seed, round_num) and independent across rounds, so a resumed run draws the same
  clients. The result may be empty (probability (1 - q)^N). Training must then still run the round
  as a round of the mechanism: the aggregate of no clients is 0 + noise, divided by the fixed
  denominator, and the round counts in the accounting. Skipping the round silently would reveal
  that it was empty, which the accounting does not cover.

  Args:
    num_clients: N >= 1.
    q: sampling probability in [0, 1].
    seed: the run's seed (non-negative).
    round_num: the round number (non-negative).

  Returns:
    int64 array of the sampled client indices in increasing order, shape [K], 0 <= K <= N.
  """
  if not num_clients >= 1 or int(num_clients) != num_clients:
    raise PrivacyParameterError(f"num_clients must be a positive integer. Found {num_clients}.")
  _check_sampling_probability(q)
  if seed < 0 or round_num < 0:
    raise PrivacyParameterError(
        f"seed and round_num must be non-negative. Found seed={seed}, round_num={round_num}.")
  rng = np.random.default_rng([int(seed), int(round_num)])
  return np.flatnonzero(rng.random(int(num_clients)) < q).astype(np.int64)


def describe(spec: PrivacySpec, epsilons: dict) -> str:
  """A human-readable report of the guarantee: epsilon per accountant, unit, sampling assumption."""
  lines = [f"epsilon ({name}) = {eps:.4f}" for name, eps in epsilons.items()]
  lines += [
      f"delta = {spec.delta:g}",
      f"noise_multiplier = {spec.noise_multiplier:g}",
      f"rounds = {spec.rounds}",
      f"sampling probability q = {spec.clients_per_round:g} / {spec.num_clients} = "
      f"{spec.sampling_probability:.6g}",
      f"unit of privacy: {UNIT_OF_PRIVACY}",
      f"sampling assumption: {SAMPLING_ASSUMPTION}",
  ]
  return "\n".join(lines)


def _check_delta(delta):
  if not (isinstance(delta, (int, float)) and 0 < delta < 1):
    raise PrivacyParameterError(f"delta must be in (0, 1). Found {delta}.")


def _check_sampling_probability(q):
  if not (isinstance(q, (int, float)) and 0 <= q <= 1):
    raise PrivacyParameterError(f"sampling probability q must be in [0, 1]. Found {q}.")


def _check_nonnegative_finite(value, name):
  if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
    raise PrivacyParameterError(f"{name} must be a non-negative finite number. Found {value}.")


def _check_positive_finite(value, name):
  if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
    raise PrivacyParameterError(f"{name} must be a positive finite number. Found {value}.")
