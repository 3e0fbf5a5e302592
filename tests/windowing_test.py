"""Windowed decisions, window choice and detection delays against hand-computed examples."""
import math

import numpy as np
import pytest

from tff_fcl import windowing

# Per-packet flags at threshold 0.5:    0    1    1    0    1     1     1     0    0    0    0    0
SCORES = np.array([0.2, 0.9, 0.8, 0.1, 0.95, 0.99, 0.97, 0.1, 0.2, 0.3, 0.1, 0.1])
LABELS = np.array([0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1])
KINDS = np.array([0, 1, 1, 2, 2, 2, 2, 0, 0, 0, 1, 1])


def test_majority_vote_hand_example():
  share, flags = windowing.windowed_decisions(SCORES, 0.5, 3, "majority")
  np.testing.assert_allclose(share, [0, 1 / 2, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, 0, 0])
  # A window of 2 at the start holds one flag of two: not a strict majority.
  np.testing.assert_array_equal(flags, [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])


def test_mean_score_hand_example():
  mean, flags = windowing.windowed_decisions(SCORES, 0.5, 3, "mean")
  expected = [0.2, 0.55, 1.9 / 3, 1.8 / 3, 1.85 / 3, 2.04 / 3, 2.91 / 3, 2.06 / 3, 1.27 / 3, 0.2,
              0.6 / 3, 0.5 / 3]
  np.testing.assert_allclose(mean, expected, rtol=1e-12)
  np.testing.assert_array_equal(flags, [0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])


def test_window_one_is_per_packet():
  _, flags = windowing.windowed_decisions(SCORES, 0.5, 1, "majority")
  np.testing.assert_array_equal(flags, SCORES > 0.5)


@pytest.mark.parametrize("mode", windowing.WINDOW_MODES)
def test_stream_in_chunks_equals_whole(mode):
  rng = np.random.default_rng(0)
  scores = rng.random(101)
  whole = windowing.window_statistic(scores, 0.6, 7, mode)
  stream = windowing.RollingWindow(7)
  pieces = [windowing.window_statistic(scores[a:b], 0.6, 7, mode, stream)
            for a, b in [(0, 3), (3, 4), (4, 50), (50, 101)]]
  np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=1e-12)


def test_attack_bursts_and_delays_hand_example():
  flags = SCORES > 0.5
  bursts = windowing.attack_bursts(LABELS, KINDS, flags)
  # kind 1 rows 1-2 (flagged at once), kind 2 rows 3-6 (first flag at row 4), kind 1 rows 10-11 (missed).
  assert bursts == [windowing.Burst(1, 1, 2, 0), windowing.Burst(2, 3, 4, 1), windowing.Burst(1, 10, 2, None)]
  _, windowed = windowing.windowed_decisions(SCORES, 0.5, 3, "majority")
  assert [b.delay for b in windowing.attack_bursts(LABELS, KINDS, windowed)] == [1, 0, None]
  summary = windowing.delay_summary(bursts, ["benign", "a", "b"])
  assert list(summary) == ["a", "b"]
  assert dict(summary["a"]) == dict(bursts=2, detected=1, mean_delay=0.0, median_delay=0.0, max_delay=0.0)
  assert dict(summary["b"]) == dict(bursts=1, detected=1, mean_delay=1.0, median_delay=1.0, max_delay=1.0)
  missed = windowing.delay_summary([windowing.Burst(1, 0, 3, None)], ["benign", "a"])["a"]
  assert missed["detected"] == 0 and math.isnan(missed["mean_delay"])


def test_choose_window_is_smallest_meeting_target():
  # One isolated flagged packet in every five: FPR 0.2 per packet, 0 from w = 2 on.
  validation = np.tile([0.0, 0.0, 1.0, 0.0, 0.0], 4)
  choice = windowing.choose_window(validation, 0.5, target_fpr=0.05, mode="majority")
  assert choice == windowing.WindowChoice(2, 0.0, True)
  # Runs of two flagged packets fill 2/2 of w = 2 and 2/3 of w = 3; w = 4 is the first without a majority.
  validation = np.tile([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], 5)
  choice = windowing.choose_window(validation, 0.5, target_fpr=0.05, mode="majority")
  assert choice.window == 4 and choice.met
  for w in range(1, 4):
    assert np.mean(windowing.windowed_decisions(validation, 0.5, w, "majority")[1]) > 0.05


def test_choose_window_reports_unmet_target():
  choice = windowing.choose_window(np.ones(10), 0.5, target_fpr=0.01, mode="mean", max_window=5)
  assert choice == windowing.WindowChoice(1, 1.0, False)


def test_bad_arguments():
  with pytest.raises(ValueError, match="Unknown window mode 'vote'"):
    windowing.windowed_decisions(SCORES, 0.5, 3, "vote")
  with pytest.raises(ValueError, match="window must be at least 1. Found 0."):
    windowing.RollingWindow(0)
  with pytest.raises(ValueError, match="empty validation set"):
    windowing.choose_window(np.zeros(0), 0.5, target_fpr=0.01, mode="mean")
