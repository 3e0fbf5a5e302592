"""Hyper-parameters of federated contrastive learning, validated once at construction."""

import dataclasses

WEIGHTINGS = ("consistency", "uniform", "examples")


@dataclasses.dataclass(frozen=True)
class FCLConfig:
  """What a client and the server need to run one FCL round.

  The defaults are the settings tuned on the bundled demo data (BUILD_NOTES.md, "Defaults").

  Attributes:
    temperature: tau of the InfoNCE loss (Eq. 3), > 0.
    align_weight: lambda_align, the weight of the alignment loss (Eq. 4), >= 0.
    local_epochs: passes over the client's data per round, >= 1.
    client_learning_rate: Adam learning rate of local training, > 0.
    server_learning_rate: SGD learning rate applied to the aggregated update (1.0 = model averaging).
    reference_momentum: beta in g <- normalize(beta * g + (1 - beta) * m), in [0, 1).
    mask_rate: probability of masking a feature (replacement from the client's own batch), [0, 1).
    jitter_std: std of the Gaussian jitter added to features, >= 0.
    clip_norm: per-client L2 clip of everything a client sends (model delta and m_i, jointly) before
      aggregation; None disables clipping.
    weighting: the aggregation weight of client i: "consistency" w_i = 1/(1+d_i) (Eq. 5), "uniform"
      w_i = 1 (ablation), "examples" w_i = n_i, its number of training rows (plain FedAvg).
  """
  temperature: float = 0.1
  align_weight: float = 0.1
  local_epochs: int = 2
  client_learning_rate: float = 3e-3
  server_learning_rate: float = 1.0
  reference_momentum: float = 0.5
  mask_rate: float = 0.1
  jitter_std: float = 0.05
  clip_norm: float = None
  weighting: str = "consistency"

  def __post_init__(self):
    checks = (
        ("temperature", self.temperature > 0, "must be positive"),
        ("align_weight", self.align_weight >= 0, "must be non-negative"),
        ("local_epochs", int(self.local_epochs) == self.local_epochs and self.local_epochs >= 1,
         "must be a positive integer"),
        ("client_learning_rate", self.client_learning_rate > 0, "must be positive"),
        ("server_learning_rate", self.server_learning_rate > 0, "must be positive"),
        ("reference_momentum", 0 <= self.reference_momentum < 1, "must be in [0, 1)"),
        ("mask_rate", 0 <= self.mask_rate < 1, "must be in [0, 1)"),
        ("jitter_std", self.jitter_std >= 0, "must be non-negative"),
        ("clip_norm", self.clip_norm is None or self.clip_norm > 0, "must be positive or None"),
        ("weighting", self.weighting in WEIGHTINGS, f"must be one of {', '.join(WEIGHTINGS)}"),
    )
    for name, ok, requirement in checks:
      if not ok:
        raise ValueError(f"FCLConfig.{name} {requirement}. Found {getattr(self, name)!r}.")
