"""AfterImage features: hand-computed known answers, the float64 reference, properties, pruning."""

import glob
import math
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from tests import reference_afterimage
from tff_fcl.data import schema
from tff_fcl.features import afterimage
from tff_fcl.features import extract
from tff_fcl.features import packets as packets_lib

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pcaps")
LAMBDAS = schema.DECAY_FACTORS
MAC_A, MAC_B = bytes.fromhex("0000000000aa"), bytes.fromhex("0000000000bb")
IP_A, IP_B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
# Values near 0 are compared absolutely: |fast - reference| <= RTOL * max(|reference|, ATOL_FLOOR).
RTOL, ATOL_FLOOR = 1e-6, 1.0


def _packet(t, length, forward=True, network=packets_lib.NETWORK_IPV4, ports=(1000, 80)):
  src, dst = (MAC_A, IP_A), (MAC_B, IP_B)
  if not forward:
    src, dst, ports = dst, src, ports[::-1]
  return packets_lib.Packet(t, length, src[0], dst[0], network, src[1], dst[1], 6, *ports)


def _column(family, window_index, stat):
  return schema.FEATURE_INDEX[schema.feature_name(family, schema.WINDOWS[window_index], stat)]


def _expect(row, family, window_index, **stats):
  for stat, value in stats.items():
    assert row[_column(family, window_index, stat)] == pytest.approx(value, rel=1e-12, abs=1e-12), (
        f"{family} L{LAMBDAS[window_index]} {stat}")


def test_one_packet_all_families():
  row = afterimage.AfterImage().update([_packet(5.0, 100)])[0]
  for k in range(len(LAMBDAS)):
    for family in ("MI_dir", "H"):
      _expect(row, family, k, weight=1.0, mean=100.0, variance=0.0)
    _expect(row, "HH_jit", k, weight=1.0, mean=0.0, variance=0.0)
    for family in ("HH", "HpHp"):
      _expect(row, family, k, weight=1.0, mean=100.0, std=0.0, magnitude=100.0, radius=0.0,
              covariance=0.0, pcc=0.0)


def test_two_packets_on_one_stream():
  rows = afterimage.AfterImage().update([_packet(0.0, 100), _packet(1.0, 300)])
  for k, lam in enumerate(LAMBDAS):
    d = 2.0 ** -lam  # decay over dt = 1 s
    mean = (100 * d + 300) / (1 + d)
    var = 40000 * d / (1 + d) ** 2  # weighted variance of {100 (weight d), 300 (weight 1)}
    for family in ("MI_dir", "H"):
      _expect(rows[1], family, k, weight=1 + d, mean=mean, variance=var)
    # Inter-arrival times 0 (first packet) and 1 s.
    _expect(rows[1], "HH_jit", k, weight=1 + d, mean=1 / (1 + d), variance=d / (1 + d) ** 2)
    for family in ("HH", "HpHp"):
      _expect(rows[1], family, k, weight=1 + d, mean=mean, std=math.sqrt(var), magnitude=mean,
              radius=var, covariance=0.0, pcc=0.0)


def test_packet_and_reply_on_reverse_channel():
  # A->B 100 @0 and 300 @1, then the replies B->A 60 @1.5 and 20 @2.
  burst = [_packet(0.0, 100), _packet(1.0, 300), _packet(1.5, 60, forward=False),
           _packet(2.0, 20, forward=False)]
  rows = afterimage.AfterImage().update(burst)
  for k, lam in enumerate(LAMBDAS):
    d, h = 2.0 ** -lam, 2.0 ** (-lam * 0.5)
    mean_a, var_a = (100 * d + 300) / (1 + d), 40000 * d / (1 + d) ** 2
    _expect(rows[2], "MI_dir", k, weight=1.0, mean=60.0, variance=0.0)
    _expect(rows[2], "HH", k, weight=1.0, mean=60.0, std=0.0, magnitude=math.hypot(60.0, mean_a),
            radius=var_a, covariance=0.0, pcc=0.0)
    mean_b, var_b = (60 * h + 20) / (1 + h), 1600 * h / (1 + h) ** 2
    residual_a = 300 - mean_a  # last residual of A->B, not decayed
    residual_b = 20 - mean_b
    count = ((1 + d) * h + 1) * h + 1  # pair count, decayed from the pair's last update
    cov = residual_a * residual_b / count
    pcc = -math.sqrt(d * h) / count  # the same in closed form
    for family in ("MI_dir", "H"):
      _expect(rows[3], family, k, weight=1 + h, mean=mean_b, variance=var_b)
    _expect(rows[3], "HH_jit", k, weight=1 + h, mean=0.5 / (1 + h), variance=0.25 * h / (1 + h) ** 2)
    for family in ("HH", "HpHp"):
      _expect(rows[3], family, k, weight=1 + h, mean=mean_b, std=math.sqrt(var_b),
              magnitude=math.hypot(mean_b, mean_a), radius=math.hypot(var_b, var_a),
              covariance=cov, pcc=pcc)
      assert rows[3][_column(family, k, "pcc")] == pytest.approx(
          cov / math.sqrt(var_a * var_b), rel=1e-12)


def test_hphp_keys_arp_by_mac_and_portless_ip_by_address():
  icmp = _packet(0.0, 70, ports=(-1, -1))._replace(protocol=1)
  arp = _packet(0.0, 42, network=packets_lib.NETWORK_ARP, ports=(-1, -1))
  arp_other_ips = arp._replace(src_ip=bytes(4), dst_ip=bytes([1, 2, 3, 4]), timestamp=0.5)
  rows = afterimage.AfterImage().update([icmp, _packet(0.0, 100), arp, arp_other_ips])
  hphp_weight = _column("HpHp", 0, "weight")
  # ICMP and TCP between the same hosts are different HpHp streams (port -1 vs 1000 -> 80).
  assert rows[1][hphp_weight] == 1.0
  # The two ARP packets share the MAC-keyed HpHp stream although their ARP addresses differ.
  assert rows[3][hphp_weight] == pytest.approx(1 + 2.0 ** -2.5)
  assert rows[3][_column("HH", 0, "weight")] == 1.0


def _fixture_packets():
  paths = sorted(glob.glob(os.path.join(FIXTURES, "*.pcap*")))
  assert len(paths) == 4, paths
  return extract.extract_features(paths).packets


def _assert_close_to_reference(packets, fast):
  reference = reference_afterimage.ReferenceAfterImage()
  expected = np.array([reference.features(p) for p in packets])
  error = np.abs(fast - expected) / np.maximum(np.abs(expected), ATOL_FLOOR)
  worst = np.unravel_index(np.argmax(error), error.shape)
  assert error.max() <= RTOL, (
      f"row {worst[0]} {schema.FEATURE_NAMES[worst[1]]}: {fast[worst]} vs {expected[worst]}")


def test_fast_path_matches_float64_reference_on_fixture_captures():
  packets = _fixture_packets()
  assert len(packets) == 49 + 624 + 1513 + 896
  # Small chunks, a small table and frequent pruning exercise chunk boundaries, table growth and
  # the claim that pruning expired streams changes no feature.
  config = afterimage.AfterImageConfig(chunk_size=97, max_streams=1 << 12, prune_every=1.0)
  _assert_close_to_reference(packets, afterimage.AfterImage(config).update(packets))


_hosts = st.integers(0, 3)
_packet_strategy = st.tuples(
    st.sampled_from([0.0, 1e-4, 0.01, 0.3, 2.0, 50.0]),  # gap to the previous packet
    st.integers(42, 1514), _hosts, _hosts,
    st.sampled_from([-1, 53, 80]),
    st.sampled_from([packets_lib.NETWORK_IPV4, packets_lib.NETWORK_ARP]))


def _crafted(draws):
  packets, t = [], 100.0
  for gap, length, src, dst, port, network in draws:
    t += gap
    ports = (-1, -1) if port < 0 or network == packets_lib.NETWORK_ARP else (port, 80 + src)
    packets.append(packets_lib.Packet(
        t, length, bytes([0, 0, 0, 0, 0, src]), bytes([0, 0, 0, 0, 0, dst]), network,
        bytes([10, 0, 0, src]), bytes([10, 0, 0, dst]), 17 if ports[0] >= 0 else 1, *ports))
  return packets


def _stat_columns(stat):
  return [i for i, name in enumerate(schema.FEATURE_NAMES) if name.endswith("_" + stat)]


@settings(max_examples=60, deadline=None)
@given(st.lists(_packet_strategy, min_size=1, max_size=40))
def test_properties_and_reference_on_random_sequences(draws):
  packets = _crafted(draws)
  features = afterimage.AfterImage(afterimage.AfterImageConfig(chunk_size=7, max_streams=64)
                                   ).update(packets)
  assert np.isfinite(features).all()
  for stat in ("variance", "std", "radius", "magnitude"):
    assert (features[:, _stat_columns(stat)] >= 0).all(), stat
  pcc = features[:, _stat_columns("pcc")]
  assert ((pcc >= -1.0) & (pcc <= 1.0)).all()
  _assert_close_to_reference(packets, features)


@settings(max_examples=30, deadline=None)
@given(st.lists(_packet_strategy, min_size=1, max_size=20), st.floats(0.0, 30.0),
       st.floats(0.0, 30.0))
def test_weights_decay_monotonically_between_packets(draws, gap_1, gap_2):
  packets = _crafted(draws)
  state = afterimage.AfterImage()
  before = state.update(packets)[-1]
  probe = packets[-1]
  weights = []
  for gap in sorted((gap_1, gap_2)):
    row = state.copy().update([probe._replace(timestamp=probe.timestamp + gap)])[0]
    weights.append(row[_stat_columns("weight")] - 1.0)  # the stream's decayed weight before insert
  for family in ("MI_dir", "H", "HH", "HpHp"):
    columns = [i for i, c in enumerate(_stat_columns("weight"))
               if schema.FEATURE_NAMES[c].startswith(family + "_L")]
    assert (weights[0][columns] <= before[_stat_columns("weight")][columns] + 1e-12).all()
    assert (weights[1][columns] <= weights[0][columns] + 1e-12).all()
    assert (weights[1][columns] >= 0.0).all()


def test_pruning_bounds_the_tables_and_restarts_dropped_streams():
  config = afterimage.AfterImageConfig(chunk_size=8, max_streams=32, prune_every=1.0)
  state = afterimage.AfterImage(config)
  flood = [packets_lib.Packet(i * 1e-3, 60, MAC_B, MAC_A, packets_lib.NETWORK_IPV4,
                              i.to_bytes(4, "big"), IP_A, 6, 1024 + i % 50000, 80)
           for i in range(1000)]
  first = _packet(0.0, 100, forward=False)
  state.update([first] + flood)
  assert max(state.num_streams().values()) <= 32
  # The first stream (10.0.0.2) was evicted by the flood: it restarts with weight 1 much later.
  row = state.update([_packet(1.0, 100, forward=False)])[0]
  assert row[_column("H", 4, "weight")] == 1.0
  # Stream that decayed below prune_weight is dropped at the next due prune.
  quiet = afterimage.AfterImage(afterimage.AfterImageConfig(chunk_size=8, max_streams=32,
                                                            prune_every=1.0))
  quiet.update([_packet(0.0, 100)])
  quiet.update([_packet(3000.0, 100, forward=False)])  # 2^(-0.01 * 3000) < 1e-6
  assert quiet.num_streams()["mi"] == 1


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="max_streams must be at least 2 \\* chunk_size = 16"):
    afterimage.AfterImageConfig(chunk_size=8, max_streams=10)
  with pytest.raises(ValueError, match="prune_weight must be in \\[0, 1\\). Found 1.5"):
    afterimage.AfterImageConfig(prune_weight=1.5)
