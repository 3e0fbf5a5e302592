"""The training loop: files a researcher reads, resume after an interruption, determinism.

`SyntheticFederatedData` implements the `tff_fcl.data.FederatedData` contract on random numbers
(labelled synthetic; attacks are shifted rows): these tests check the loop, not detection quality.
"""
import collections
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tff_fcl import experiment
from tff_fcl.fcl import FCLConfig

FCL = FCLConfig(client_learning_rate=1e-2)


class SyntheticFederatedData:
  """Two devices, 64/32/32 benign train/val/test rows and 32 attack test rows each (synthetic)."""

  def __init__(self):
    self.devices = ["dev_a", "dev_b"]
    self.client_ids = list(self.devices)
    self.manifest = {"kinds": ["benign", "synthetic/shifted"]}
    rng = np.random.default_rng(7)
    self._splits = {}
    for offset, device in enumerate(self.devices):
      benign = rng.normal(offset, 1.0, size=(128, 115)).astype(np.float32)
      attack = rng.normal(offset + 3.0, 1.0, size=(32, 115)).astype(np.float32)
      zeros, ones = np.zeros(32, np.int32), np.ones(32, np.int32)
      self._splits[device] = {
          "train": (benign[:64], np.zeros(64, np.int32), np.zeros(64, np.int32)),
          "val": (benign[64:96], zeros, zeros),
          "test": (np.concatenate([benign[96:], attack]), np.concatenate([zeros, ones]),
                   np.concatenate([zeros, ones])),
      }

  def device_of(self, client_id):
    return client_id

  def num_train_examples(self, client_id):
    return 64

  def train_dataset(self, client_id, *, batch_size, shuffle_seed):
    x = self._splits[client_id]["train"][0]
    return tf.data.Dataset.from_tensor_slices(x).shuffle(64, seed=shuffle_seed).batch(batch_size)

  def split_arrays(self, device, split):
    return self._splits[device][split]


def run_config(output_dir, rounds):
  return experiment.RunConfig(data_dir="synthetic", output_dir=str(output_dir), rounds=rounds,
                              batch_size=32, embedding_dim=8, projection_dim=4, hidden_units=(16,))


def read_metrics(output_dir):
  with open(os.path.join(output_dir, "metrics.csv")) as f:
    return list(csv.DictReader(f))


def test_run_writes_metrics_state_and_evaluation(tmp_path):
  lines = []
  result = experiment.run_fcl_training(run_config(tmp_path, 2), FCL, SyntheticFederatedData(),
                                       progress=lines.append)
  rows = read_metrics(tmp_path)
  assert [r["round_num"] for r in rows] == ["1", "2"], "one metrics row per round"
  for column in ("client_work/loss", "client_work/contrastive_loss", "client_work/alignment_loss",
                 "client_work/weight_mean", "client_work/weight_min", "client_work/weight_max",
                 "aggregator/weight_sum", "finalizer/reference/reference_norm", "distance/dev_a"):
    assert column in rows[0], f"metrics.csv lacks {column}"
  assert float(rows[1]["finalizer/reference/reference_norm"]) == pytest.approx(1.0, abs=1e-5)
  assert len(lines) == 2 and "eta" in lines[0] and "elapsed" in lines[0]
  with open(tmp_path / "eval.json") as f:
    saved = json.load(f)
  for key in ("algorithm", "rounds", "pooled", "per_client", "per_attack", "config", "wall_time_s"):
    assert key in saved, f"eval.json lacks {key}"
  assert set(saved["pooled"]) >= {"accuracy", "auc", "f1", "recall", "precision", "fpr"}
  assert set(saved["per_client"]) == {"dev_a", "dev_b"}
  assert list(saved["per_attack"]) == ["synthetic/shifted"]
  assert saved["pooled"] == pytest.approx(json.loads(json.dumps(result["pooled"])))
  assert (tmp_path / "summary.md").read_text().startswith("# fcl: 2 rounds")
  assert os.listdir(tmp_path / "program_state"), "the state of each round is saved"


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
  data = SyntheticFederatedData()
  uninterrupted = experiment.run_fcl_training(run_config(tmp_path / "a", 3), FCL, data, progress=lambda _: None)

  original = data.train_dataset
  calls = collections.Counter()

  def crash_in_round_two(client_id, *, batch_size, shuffle_seed):
    calls[shuffle_seed] += 1
    if shuffle_seed == 2:
      raise KeyboardInterrupt("simulated crash in round 2")
    return original(client_id, batch_size=batch_size, shuffle_seed=shuffle_seed)

  monkeypatch.setattr(data, "train_dataset", crash_in_round_two)
  with pytest.raises(KeyboardInterrupt):
    experiment.run_fcl_training(run_config(tmp_path / "b", 3), FCL, data, progress=lambda _: None)
  assert [r["round_num"] for r in read_metrics(tmp_path / "b")] == ["1"], "round 1 was saved"

  monkeypatch.setattr(data, "train_dataset", original)
  lines = []
  resumed = experiment.run_fcl_training(run_config(tmp_path / "b", 3), FCL, data, progress=lines.append)
  assert lines[0].startswith("resuming after round 1"), lines[0]
  assert [r["round_num"] for r in read_metrics(tmp_path / "b")] == ["1", "2", "3"]
  assert resumed["pooled"] == uninterrupted["pooled"], "resuming loses nothing and changes nothing"
  final_a, final_b = read_metrics(tmp_path / "a")[-1], read_metrics(tmp_path / "b")[-1]
  assert final_a["client_work/loss"] == final_b["client_work/loss"]


def test_other_settings_in_the_same_output_dir_are_refused(tmp_path):
  experiment.run_fcl_training(run_config(tmp_path, 1), FCL, SyntheticFederatedData(), progress=lambda _: None)
  with pytest.raises(experiment.ConfigMismatchError, match=r"holds a run with other settings \(fcl.temperature\)"):
    experiment.run_fcl_training(run_config(tmp_path, 1), FCLConfig(client_learning_rate=1e-2, temperature=0.2),
                                SyntheticFederatedData(), progress=lambda _: None)


def test_dp_run_releases_only_private_metrics_and_reports_epsilon(tmp_path):
  from tff_fcl import privacy  # pylint: disable=g-import-not-at-top
  run = experiment.RunConfig(data_dir="synthetic", output_dir=str(tmp_path), rounds=3, batch_size=32,
                             embedding_dim=8, projection_dim=4, hidden_units=(16,), clients_per_round=1,
                             dp_noise_multiplier=1.0, dp_clip_norm=0.5)
  # q = 1/2 per client: with seed 0 some of the 3 rounds sample no client and must still run.
  sizes = [len(privacy.poisson_sample_clients(2, 0.5, 0, r)) for r in (1, 2, 3)]
  assert 0 in sizes, sizes
  result = experiment.run_fcl_training(run, FCL, SyntheticFederatedData(), progress=lambda _: None)
  rows = read_metrics(tmp_path)
  assert [r["round_num"] for r in rows] == ["1", "2", "3"], "empty rounds are rounds"
  assert not [c for c in rows[0] if c.startswith(("client_work/", "distance/"))], (
      "client-work metrics bypass the DP aggregator and must not be released")
  assert "aggregator/clipped_count" not in rows[0]
  assert float(rows[0]["aggregator/clipping_norm"]) == pytest.approx(0.5)
  for round_num, row in enumerate(rows, start=1):
    assert float(row["privacy/epsilon_rdp"]) == pytest.approx(
        privacy.compute_epsilon(1.0, 0.5, round_num, 1e-5, "rdp"))
  assert result["privacy"]["epsilon"] == pytest.approx(privacy.compute_epsilon(1.0, 0.5, 3, 1e-5, "pld"))
  assert result["privacy"]["unit_of_privacy"].startswith("the client")


def test_dp_settings_are_checked_before_training(tmp_path):
  with pytest.raises(ValueError, match="DP training needs exactly one of --dp_clip_norm"):
    experiment.RunConfig(data_dir="x", output_dir=str(tmp_path), clients_per_round=1, dp_noise_multiplier=1.0)
  with pytest.raises(ValueError, match="need --dp_noise_multiplier"):
    experiment.RunConfig(data_dir="x", output_dir=str(tmp_path), dp_clip_norm=1.0)
