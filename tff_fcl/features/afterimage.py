"""Damped incremental statistics per packet (Kitsune's AfterImage, as used by N-BaIoT): [n, 115].

Definitions (Mirsky et al., NDSS 2018, Sec. IV-B; Meidan et al. 2018, Table 1), per decay factor
lambda in `schema.DECAY_FACTORS` and value v = the frame's original length (HH_jit: the inter-arrival
time). A stream S = (w, LS, SS, last_t) is updated at time t by

    d = 2^(-lambda * max(t - last_t, 0));  w <- d*w + 1;  LS <- d*LS + v;  SS <- d*SS + v^2
    mean = LS / w;  variance = max(SS / w - mean^2, 0);  std = sqrt(variance)

(a new stream starts at w = LS = SS = 0 with last_t = t, so its first packet gives w = 1, mean = v,
variance = 0). Families and keys:

    MI_dir  (src MAC, src IP)           weight, mean, variance
    H       src IP                      weight, mean, variance
    HH      src IP -> dst IP            weight, mean, std, magnitude, radius, covariance, pcc
    HH_jit  src IP -> dst IP, v = t - (previous packet time on that channel; 0 for the first)
                                        weight, mean, variance
    HpHp    (src IP, port) -> (dst IP, port), port -1 for port-less IP packets (ICMP, IGMP, later
            fragments whose first fragment was not seen); ARP: src MAC -> dst MAC;     like HH

For the 2-D families, a = this direction, b = the reverse channel (w = mean = var = 0 when absent,
and also when the channel is its own reverse, src == dst): magnitude = sqrt(mean_a^2 + mean_b^2),
radius = sqrt(var_a^2 + var_b^2). The unordered pair {a, b} keeps a residual product sum SR, its count
C and the last residual r_a, r_b of each direction; inserting v into a at time t does

    e = 2^(-lambda * max(t - t_pair, 0));  r_a <- v - mean_a (after the insert);
    SR <- e*SR + r_a * r_b;  C <- e*C + 1;  covariance = SR / C
    pcc = covariance / (std_a * std_b), 0 when std_a * std_b = 0, clipped to [-1, 1]

(r_b is not decayed; it is 0 until b has had a packet). Timestamps that go backwards are treated as
dt = 0. Column layout follows `schema.FEATURE_NAMES`: family-major, then window, then statistic.

Expiry: a stream (or pair) whose weight (count) in the slowest window, decayed to the packet's time,
is below `prune_weight` (1e-6) is expired: a packet on it starts it afresh (first-packet values,
jitter 0), and an expired reverse channel counts as absent. This makes the features independent of
when pruning runs (below).

Bounded memory: each stream table holds at most `max_streams` entries. Every `prune_every` seconds
of capture time, and whenever a chunk could overflow the table, streams whose weight at the slowest
decay, decayed to the current time, is below `prune_weight` are dropped; if that is not enough, the
least recently seen streams are evicted (to 7/8 of the cap). Dropping an expired stream changes no
feature; an evicted live stream (only when more than `max_streams` streams are live) restarts fresh.

Execution: per chunk of `chunk_size` packets, Python maps stream keys to table slots (dicts), then
one numba kernel (compiled once, cached on disk) runs the per-packet loop over the slot arrays.
"""

import copy
import dataclasses
import typing

import numba
import numpy as np

from tff_fcl.data import schema
from tff_fcl.features import packets as packets_lib

NUM_WINDOWS = len(schema.DECAY_FACTORS)
_COLUMN = {family: schema.FEATURE_INDEX[schema.feature_name(family, schema.WINDOWS[0], stats[0])]
           for family, stats in schema.FAMILY_STATS.items()}


@dataclasses.dataclass(frozen=True)
class AfterImageConfig:
  """max_streams: cap per stream table; prune_weight: drop threshold; prune_every: seconds."""
  max_streams: int = 1 << 17
  prune_weight: float = 1e-6
  prune_every: float = 60.0
  chunk_size: int = 4096

  def __post_init__(self):
    if self.chunk_size < 1:
      raise ValueError(f"chunk_size must be positive. Found {self.chunk_size}.")
    if self.max_streams < 2 * self.chunk_size:
      raise ValueError(f"max_streams must be at least 2 * chunk_size = {2 * self.chunk_size}. "
                       f"Found {self.max_streams}.")
    if not 0.0 <= self.prune_weight < 1.0:
      raise ValueError(f"prune_weight must be in [0, 1). Found {self.prune_weight}.")
    if self.prune_every <= 0:
      raise ValueError(f"prune_every must be positive. Found {self.prune_every}.")


class _StreamTable:
  """key -> slot map over per-slot state arrays (leading axis = slot) that grow up to a cap.

  `time_field` names the [slots] array of last update times and `weight_field` the [slots, windows]
  array whose slowest-decay column decides pruning.
  """

  def __init__(self, fields: dict, time_field: str, weight_field: str, capacity: int = 1024):
    self.slots = {}
    self.keys = [None] * capacity
    self.free = list(range(capacity - 1, -1, -1))
    self.arrays = {name: np.zeros((capacity,) + shape) for name, shape in fields.items()}
    self.time_field, self.weight_field = time_field, weight_field

  @property
  def capacity(self) -> int:
    return len(self.keys)

  def assign(self, keys: list) -> typing.Tuple[list, list, dict]:
    """Slots of `keys` in order (unknown keys take free slots), whether each was just created (its
    state must be reset), and {created key: index of its first occurrence}."""
    get = self.slots.get
    slots = [get(key, -1) for key in keys]
    fresh = [False] * len(keys)
    born = {}
    for i in [i for i, slot in enumerate(slots) if slot < 0]:
      key = keys[i]
      slot = get(key, -1)  # created by an earlier packet of this chunk?
      if slot < 0:
        slot = self.free.pop()
        self.slots[key] = slot
        self.keys[slot] = key
        born[key] = i
        fresh[i] = True
      slots[i] = slot
    return slots, fresh, born

  def reserve(self, count: int, max_streams: int):
    """Grows the arrays so that `count` more keys fit (the caller has pruned below max_streams)."""
    needed = len(self.slots) + count
    if needed <= self.capacity:
      return
    new_capacity = min(max(needed, 2 * self.capacity), max_streams)
    grow = new_capacity - self.capacity
    for name, array in self.arrays.items():
      self.arrays[name] = np.concatenate([array, np.zeros((grow,) + array.shape[1:])])
    self.free = list(range(new_capacity - 1, self.capacity - 1, -1)) + self.free
    self.keys.extend([None] * grow)

  def prune(self, now: float, slowest: int, decay: float, weight: float, keep: int):
    """Drops streams lighter than `weight` at time `now`, then the least recent beyond `keep`."""
    used = np.fromiter(self.slots.values(), dtype=np.int64, count=len(self.slots))
    if not len(used):
      return
    times = self.arrays[self.time_field][used]
    age = np.maximum(now - times, 0.0)
    current = self.arrays[self.weight_field][used, slowest] * np.exp2(-decay * age)
    drop = current < weight
    if len(used) - drop.sum() > keep:
      order = np.argsort(times, kind="stable")
      survivors = order[~drop[order]]
      drop[survivors[:len(survivors) - keep]] = True
    for slot in used[drop].tolist():
      del self.slots[self.keys[slot]]
      self.keys[slot] = None
      self.free.append(slot)


def _one_d_fields() -> dict:
  return {"w": (NUM_WINDOWS,), "ls": (NUM_WINDOWS,), "ss": (NUM_WINDOWS,), "t": ()}


def _pair_fields() -> dict:
  return {"sr": (NUM_WINDOWS,), "c": (NUM_WINDOWS,), "r": (2, NUM_WINDOWS), "t": ()}


class AfterImage:
  """Streaming AfterImage state: `update(packets)` -> features [len(packets), 115] (float64).

  `copy()` gives an independent state (used to run an injected burst from a warmed state).
  Packets must expose `timestamp, length, src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port`
  (see `packets.Packet`).
  """

  def __init__(self, config: AfterImageConfig = AfterImageConfig()):
    self.config = config
    self.lambdas = np.asarray(schema.DECAY_FACTORS, dtype=np.float64)
    self._slowest = int(np.argmin(self.lambdas))
    hh_fields = dict(_one_d_fields(), jw=(NUM_WINDOWS,), jls=(NUM_WINDOWS,), jss=(NUM_WINDOWS,))
    self.tables = {
        "mi": _StreamTable(_one_d_fields(), "t", "w"),
        "h": _StreamTable(_one_d_fields(), "t", "w"),
        "hh": _StreamTable(hh_fields, "t", "w"),
        "hh_pair": _StreamTable(_pair_fields(), "t", "c"),
        "hphp": _StreamTable(_one_d_fields(), "t", "w"),
        "hphp_pair": _StreamTable(_pair_fields(), "t", "c"),
    }
    self._last_prune = None

  def copy(self) -> "AfterImage":
    return copy.deepcopy(self)

  def num_streams(self) -> dict:
    return {name: len(table.slots) for name, table in self.tables.items()}

  def update(self, packets: typing.Sequence) -> np.ndarray:
    """Inserts the packets in order; returns their features, [len(packets), 115] float64."""
    out = np.empty((len(packets), schema.NUM_FEATURES))
    size = self.config.chunk_size
    for start in range(0, len(packets), size):
      chunk = packets[start:start + size]
      self._make_room(len(chunk), chunk[0].timestamp)
      self._update_chunk(chunk, out[start:start + len(chunk)])
    return out

  def _make_room(self, count: int, now: float):
    config = self.config
    tables = self.tables.values()
    overflow = any(len(t.slots) + count > config.max_streams for t in tables)
    due = self._last_prune is None or now - self._last_prune >= config.prune_every
    if overflow or due:
      self._last_prune = now
      keep = config.max_streams - count - config.max_streams // 8
      for table in tables:
        table.prune(now, self._slowest, self.lambdas[self._slowest], config.prune_weight,
                    keep if len(table.slots) + count > config.max_streams else len(table.slots))
    for table in tables:
      table.reserve(count, config.max_streams)

  def _update_chunk(self, chunk, out: np.ndarray):
    times = np.fromiter((p.timestamp for p in chunk), dtype=np.float64, count=len(chunk))
    values = np.fromiter((p.length for p in chunk), dtype=np.float64, count=len(chunk))
    columns, flags, sides = [], [], []  # slots: mi, h, hh, hh_rev, hh_pair, hphp, hphp_rev, hphp_pair
    for name, keys in (("mi", [(p.src_mac, p.src_ip) for p in chunk]),
                       ("h", [p.src_ip for p in chunk])):
      slots, fresh, _ = self.tables[name].assign(keys)
      columns.append(slots)
      flags.append(fresh)
    arp = packets_lib.NETWORK_ARP
    hh_ends = [(p.src_ip, p.dst_ip) for p in chunk]
    hphp_ends = [((p.src_mac,), (p.dst_mac,)) if p.network == arp else
                 ((p.src_ip, p.src_port), (p.dst_ip, p.dst_port)) for p in chunk]
    for name, ends in (("hh", hh_ends), ("hphp", hphp_ends)):
      table = self.tables[name]
      slots, fresh, born = table.assign(ends)
      get = table.slots.get
      reverse = [get((b, a), -1) if a != b else -1 for a, b in ends]
      for i in [i for i, slot in enumerate(reverse) if slot >= 0 and born]:
        if born.get(ends[i][::-1], -1) >= i:  # the reverse channel starts later in this chunk
          reverse[i] = -1
      side = [0 if a <= b else 1 for a, b in ends]
      pair_slots, pair_fresh, _ = self.tables[name + "_pair"].assign(
          [(a, b) if flip == 0 else (b, a) for (a, b), flip in zip(ends, side)])
      columns += [slots, reverse, pair_slots]
      flags += [fresh, pair_fresh]
      sides.append(side)
    # C-contiguous [n, columns] arrays, so that the kernel is compiled for one signature only.
    slots = np.ascontiguousarray(np.array(columns, dtype=np.int64).T)
    fresh = np.ascontiguousarray(np.array(flags, dtype=np.bool_).T)
    sides = np.ascontiguousarray(np.array(sides, dtype=np.int64).T)
    s = {name: table.arrays for name, table in self.tables.items()}
    _kernel(times, values, slots, fresh, sides, self.lambdas, self._slowest,
            self.config.prune_weight,
            s["mi"]["w"], s["mi"]["ls"], s["mi"]["ss"], s["mi"]["t"],
            s["h"]["w"], s["h"]["ls"], s["h"]["ss"], s["h"]["t"],
            s["hh"]["w"], s["hh"]["ls"], s["hh"]["ss"], s["hh"]["t"],
            s["hh"]["jw"], s["hh"]["jls"], s["hh"]["jss"],
            s["hh_pair"]["sr"], s["hh_pair"]["c"], s["hh_pair"]["r"], s["hh_pair"]["t"],
            s["hphp"]["w"], s["hphp"]["ls"], s["hphp"]["ss"], s["hphp"]["t"],
            s["hphp_pair"]["sr"], s["hphp_pair"]["c"], s["hphp_pair"]["r"], s["hphp_pair"]["t"],
            out)


@numba.njit(cache=True)
def _expired(w, last_t, s, t, lambdas, slowest, expiry):
  """True if slot s's weight in the slowest window, decayed to time t, is below `expiry`."""
  return w[s, slowest] * 2.0 ** (-lambdas[slowest] * max(t - last_t[s], 0.0)) < expiry


@numba.njit(cache=True)
def _insert(w, ls, ss, last_t, s, fresh, t, v, lambdas):
  """One 1-D stream insert at slot s (all windows); returns dt since the stream's last packet."""
  if fresh:
    w[s, :] = 0.0
    ls[s, :] = 0.0
    ss[s, :] = 0.0
    last_t[s] = t
  dt = max(t - last_t[s], 0.0)
  for k in range(lambdas.shape[0]):
    d = 2.0 ** (-lambdas[k] * dt)
    w[s, k] = w[s, k] * d + 1.0
    ls[s, k] = ls[s, k] * d + v
    ss[s, k] = ss[s, k] * d + v * v
  last_t[s] = max(last_t[s], t)
  return dt


@numba.njit(cache=True)
def _write_1d(w, ls, ss, s, out, i, column):
  for k in range(w.shape[1]):
    mean = ls[s, k] / w[s, k]
    out[i, column + 3 * k] = w[s, k]
    out[i, column + 3 * k + 1] = mean
    out[i, column + 3 * k + 2] = max(ss[s, k] / w[s, k] - mean * mean, 0.0)


@numba.njit(cache=True)
def _write_2d(w, ls, ss, last_t, a, b, sr, c, r, pair_t, p, side, fresh, t, v, lambdas, slowest,
              expiry, out, i, column):
  """HH / HpHp statistics after inserting v into direction a (b = reverse slot or -1)."""
  if b >= 0 and _expired(w, last_t, b, t, lambdas, slowest, expiry):
    b = -1
  if fresh or _expired(c, pair_t, p, t, lambdas, slowest, expiry):
    sr[p, :] = 0.0
    c[p, :] = 0.0
    r[p, :, :] = 0.0
    pair_t[p] = t
  dt = max(t - pair_t[p], 0.0)
  for k in range(lambdas.shape[0]):
    mean_a = ls[a, k] / w[a, k]
    var_a = max(ss[a, k] / w[a, k] - mean_a * mean_a, 0.0)
    mean_b = 0.0
    var_b = 0.0
    if b >= 0 and w[b, k] > 0.0:
      mean_b = ls[b, k] / w[b, k]
      var_b = max(ss[b, k] / w[b, k] - mean_b * mean_b, 0.0)
    e = 2.0 ** (-lambdas[k] * dt)
    residual = v - mean_a
    sr[p, k] = sr[p, k] * e + residual * r[p, 1 - side, k]
    c[p, k] = c[p, k] * e + 1.0
    r[p, side, k] = residual
    cov = sr[p, k] / c[p, k]
    std_a = np.sqrt(var_a)
    std_b = np.sqrt(var_b)
    den = std_a * std_b
    pcc = 0.0
    if den > 0.0:
      pcc = min(max(cov / den, -1.0), 1.0)
    base = column + 7 * k
    out[i, base] = w[a, k]
    out[i, base + 1] = mean_a
    out[i, base + 2] = std_a
    out[i, base + 3] = np.sqrt(mean_a * mean_a + mean_b * mean_b)
    out[i, base + 4] = np.sqrt(var_a * var_a + var_b * var_b)
    out[i, base + 5] = cov
    out[i, base + 6] = pcc
  pair_t[p] = max(pair_t[p], t)


@numba.njit(cache=True)
def _kernel(times, values, slots, fresh, sides, lambdas, slowest, expiry,
            mi_w, mi_ls, mi_ss, mi_t, h_w, h_ls, h_ss, h_t,
            hh_w, hh_ls, hh_ss, hh_t, jit_w, jit_ls, jit_ss,
            hhp_sr, hhp_c, hhp_r, hhp_t,
            hp_w, hp_ls, hp_ss, hp_t, hpp_sr, hpp_c, hpp_r, hpp_t, out):
  """The per-packet loop over one chunk; slots / fresh / sides as built by `_update_chunk`."""
  for i in range(times.shape[0]):
    t = times[i]
    v = values[i]
    s = slots[i, 0]
    _insert(mi_w, mi_ls, mi_ss, mi_t, s,
            fresh[i, 0] or _expired(mi_w, mi_t, s, t, lambdas, slowest, expiry), t, v, lambdas)
    _write_1d(mi_w, mi_ls, mi_ss, s, out, i, 0)
    s = slots[i, 1]
    _insert(h_w, h_ls, h_ss, h_t, s,
            fresh[i, 1] or _expired(h_w, h_t, s, t, lambdas, slowest, expiry), t, v, lambdas)
    _write_1d(h_w, h_ls, h_ss, s, out, i, 15)
    a = slots[i, 2]
    restart = fresh[i, 2] or _expired(hh_w, hh_t, a, t, lambdas, slowest, expiry)
    if restart:
      jit_w[a, :] = 0.0
      jit_ls[a, :] = 0.0
      jit_ss[a, :] = 0.0
    jitter = _insert(hh_w, hh_ls, hh_ss, hh_t, a, restart, t, v, lambdas)
    for k in range(lambdas.shape[0]):
      d = 2.0 ** (-lambdas[k] * jitter)
      jit_w[a, k] = jit_w[a, k] * d + 1.0
      jit_ls[a, k] = jit_ls[a, k] * d + jitter
      jit_ss[a, k] = jit_ss[a, k] * d + jitter * jitter
    _write_2d(hh_w, hh_ls, hh_ss, hh_t, a, slots[i, 3], hhp_sr, hhp_c, hhp_r, hhp_t, slots[i, 4],
              sides[i, 0], fresh[i, 3], t, v, lambdas, slowest, expiry, out, i, 30)
    _write_1d(jit_w, jit_ls, jit_ss, a, out, i, 65)
    s = slots[i, 5]
    _insert(hp_w, hp_ls, hp_ss, hp_t, s,
            fresh[i, 4] or _expired(hp_w, hp_t, s, t, lambdas, slowest, expiry), t, v, lambdas)
    _write_2d(hp_w, hp_ls, hp_ss, hp_t, s, slots[i, 6], hpp_sr, hpp_c, hpp_r, hpp_t,
              slots[i, 7], sides[i, 1], fresh[i, 5], t, v, lambdas, slowest, expiry, out, i, 80)


if (_COLUMN["MI_dir"], _COLUMN["H"], _COLUMN["HH"], _COLUMN["HH_jit"], _COLUMN["HpHp"]) != (
    0, 15, 30, 65, 80):
  raise ImportError(f"schema.FEATURE_NAMES layout changed ({_COLUMN}); update the kernel columns.")
