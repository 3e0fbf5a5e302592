"""`python -m programs.train`: a one-round smoke run on fixture data, the files it writes, and its errors.

The fixture data are in-repo N-BaIoT rows (tests/fixtures/nbaiot, see its README): real Ennio doorbell
BASHLITE rows as attacks and stand-in benign rows computed from IoT Sentinel captures.
"""
import csv
import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.nbaiot import fixture_layouts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--rounds=1", "--batch_size=32", "--embedding_dim=8", "--projection_dim=4", "--hidden_units=16",
         "--local_epochs=1"]


def train(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "programs.train", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("train")
  raw = fixture_layouts.uci_layout(root / "raw")
  out = root / "out"
  flags = [f"--data_dir={raw}", f"--cache_dir={root / 'cache'}", f"--output_dir={out}", *SMALL]
  return train(*flags), out, flags


def test_smoke_run_prepares_raw_data_trains_and_evaluates(smoke_run):
  result, out, _ = smoke_run
  assert result.returncode == 0, result.stderr[-3000:]
  assert "round 1/1" in result.stdout, "one progress line per round"
  assert "fcl: pooled AUC" in result.stdout
  with open(out / "metrics.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 1, "metrics.csv has one row per round"
  assert "client_work/contrastive_loss" in rows[0] and "distance/Ennio_Doorbell" in rows[0]
  with open(out / "eval.json") as f:
    evaluation = json.load(f)
  assert evaluation["algorithm"] == "fcl" and evaluation["rounds"] == 1
  assert set(evaluation["per_client"]) == {"Ennio_Doorbell", "HueBridge"}
  assert set(evaluation["per_attack"]) == {"gafgyt/tcp", "gafgyt/udp"}, "kinds come from the paths"
  assert evaluation["config"]["fcl"]["temperature"] == 0.1
  assert (out / "summary.md").exists() and (out / "config.json").exists()


def test_rerun_with_the_same_flags_resumes_instead_of_training_again(smoke_run):
  _, _, flags = smoke_run
  result = train(*flags)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "round 1/1" not in result.stdout, "round 1 was already saved"


@pytest.mark.parametrize("args, message", [
    (["--rounds=-1"], "error: rounds must be non-negative. Found -1."),
    (["--data_dir=/nonexistent/folder"], "error: /nonexistent/folder"),
    (["--temperature=0"], "error: FCLConfig.temperature must be positive. Found 0.0."),
    (["--dp_noise_multiplier=1", "--clients_per_round=1"], "error: DP training needs exactly one of"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
  result = train(f"--output_dir={tmp_path / 'out'}", f"--cache_dir={tmp_path / 'cache'}", *args)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-500:]


def test_unknown_flag_is_refused(tmp_path):
  result = train(f"--output_dir={tmp_path}", "--tempreature=0.2")
  assert result.returncode != 0
  assert "Unknown command line flag 'tempreature'" in result.stderr


_CHECK_DEFAULTS = """
import dataclasses, json
from absl import flags
from programs import train
from tff_fcl import baselines, experiment, malicious, robust_aggregation
from tff_fcl.fcl import FCLConfig
defaults = {name: flags.FLAGS[name].default for name in flags.FLAGS}
print(json.dumps(dict(
    flags=defaults, fcl=dataclasses.asdict(FCLConfig()),
    run=dataclasses.asdict(experiment.RunConfig(data_dir="x", output_dir="y")),
    algorithms=[list(train.ALGORITHMS), list(baselines.ALGORITHMS)],
    aggregators=[list(train.AGGREGATORS), list(robust_aggregation.AGGREGATORS)],
    malicious=[list(train.MALICIOUS_KINDS), list(malicious.ATTACKS)]), default=str))
"""


@pytest.fixture(scope="module")
def program_and_library():
  """The program's flag defaults and choices next to the library's (in a fresh process: programs'
  absl flags cannot be defined twice in one)."""
  result = subprocess.run([sys.executable, "-c", _CHECK_DEFAULTS], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_flag_defaults_are_the_library_defaults(program_and_library):
  """The program's defaults and FCLConfig/RunConfig's are written twice; they must agree."""
  defaults, fcl, run = program_and_library["flags"], program_and_library["fcl"], program_and_library["run"]
  for name in ("temperature", "align_weight", "local_epochs", "client_learning_rate", "server_learning_rate",
               "mask_rate", "jitter_std", "weighting", "reference_momentum"):
    assert defaults[name] == fcl[name], name
  for name in ("rounds", "clients_per_round", "batch_size", "encoder", "embedding_dim", "projection_dim",
               "standardize", "shards_per_device", "score", "target_fpr", "threshold_rule", "seed"):
    assert defaults[name] == run[name], name
  assert [int(u) for u in defaults["hidden_units"]] == run["hidden_units"]


def test_choices_known_without_tensorflow_match_the_library(program_and_library):
  program, library = program_and_library["algorithms"]
  assert program == library
  program, library = program_and_library["aggregators"]
  assert program == library
  program, library = program_and_library["malicious"]
  assert set(program) == {"none", "attack_data", *library}


def test_a_keras_baseline_trains_from_the_program(tmp_path):
  """The autoencoder is a Sequential Keras model: it must build inside the absl program too."""
  raw = fixture_layouts.uci_layout(tmp_path / "raw")
  result = train("--algorithm=fedavg_ae", f"--data_dir={raw}", f"--cache_dir={tmp_path / 'cache'}",
                 f"--output_dir={tmp_path / 'out'}", "--rounds=1", "--local_epochs=1", "--batch_size=32")
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.load(open(tmp_path / "out" / "eval.json"))["algorithm"] == "fedavg_ae"
