"""Plain float64 reference of the AfterImage statistics, written from the definitions (no numba).

One dict entry per stream, one packet at a time; used to check `tff_fcl.features.afterimage`.
Definitions (per decay factor lambda, v = frame length; HH_jit v = inter-arrival time):
  decay d = 2^(-lambda * max(t - last_t, 0)); w = d*w + 1; LS = d*LS + v; SS = d*SS + v^2;
  mean = LS/w; var = max(SS/w - mean^2, 0).
  2-D (a = this direction, b = reverse): residual r_a = v - mean_a after the insert,
  SR = e*SR + r_a * r_b(last), C = e*C + 1 (e decays from the pair's last update),
  cov = SR/C, pcc = clip(cov / (std_a std_b), -1, 1) or 0.
  Expiry: a stream or pair whose slowest-window weight (count), decayed to t, is below EXPIRY_WEIGHT
  restarts from zero (HH_jit: jitter 0); an expired reverse stream counts as absent.
"""

import math

from tff_fcl.data import schema

LAMBDAS = schema.DECAY_FACTORS
SLOWEST = LAMBDAS.index(min(LAMBDAS))
EXPIRY_WEIGHT = 1e-6


def _expired(weight, last_t, t):
  return weight * 2.0 ** (-LAMBDAS[SLOWEST] * max(t - last_t, 0.0)) < EXPIRY_WEIGHT


class _Stream:

  def __init__(self, t):
    self.last_t = t
    self.w = [0.0] * len(LAMBDAS)
    self.ls = [0.0] * len(LAMBDAS)
    self.ss = [0.0] * len(LAMBDAS)

  def insert(self, t, v):
    dt = max(t - self.last_t, 0.0)
    for k, lam in enumerate(LAMBDAS):
      d = 2.0 ** (-lam * dt)
      self.w[k] = self.w[k] * d + 1.0
      self.ls[k] = self.ls[k] * d + v
      self.ss[k] = self.ss[k] * d + v * v
    self.last_t = max(self.last_t, t)

  def mean(self, k):
    return self.ls[k] / self.w[k]

  def var(self, k):
    mean = self.mean(k)
    return max(self.ss[k] / self.w[k] - mean * mean, 0.0)


class _Pair:

  def __init__(self, t):
    self.last_t = t
    self.sr = [0.0] * len(LAMBDAS)
    self.c = [0.0] * len(LAMBDAS)
    self.residual = {0: [0.0] * len(LAMBDAS), 1: [0.0] * len(LAMBDAS)}


def _stream(table, key, t):
  if key not in table or _expired(table[key].w[SLOWEST], table[key].last_t, t):
    table[key] = _Stream(t)
  return table[key]


class ReferenceAfterImage:
  """`features(packet)` -> list of 115 floats in schema.FEATURE_NAMES order; state kept across calls."""

  def __init__(self):
    self.mi, self.h, self.hh, self.jit, self.hphp = {}, {}, {}, {}, {}
    self.hh_pairs, self.hphp_pairs = {}, {}

  def _one_d(self, stream):
    row = []
    for k in range(len(LAMBDAS)):
      row += [stream.w[k], stream.mean(k), stream.var(k)]
    return row

  def _two_d(self, table, pairs, a, b, t, v):
    stream = _stream(table, (a, b), t)
    stream.insert(t, v)
    reverse = table.get((b, a)) if a != b else None
    if reverse is not None and _expired(reverse.w[SLOWEST], reverse.last_t, t):
      reverse = None
    key, side = ((a, b), 0) if a <= b else ((b, a), 1)
    if key not in pairs or _expired(pairs[key].c[SLOWEST], pairs[key].last_t, t):
      pairs[key] = _Pair(t)
    pair = pairs[key]
    dt = max(t - pair.last_t, 0.0)
    row = []
    for k, lam in enumerate(LAMBDAS):
      mean_a, var_a = stream.mean(k), stream.var(k)
      mean_b, var_b = (reverse.mean(k), reverse.var(k)) if reverse is not None else (0.0, 0.0)
      e = 2.0 ** (-lam * dt)
      residual = v - mean_a
      pair.sr[k] = pair.sr[k] * e + residual * pair.residual[1 - side][k]
      pair.c[k] = pair.c[k] * e + 1.0
      pair.residual[side][k] = residual
      cov = pair.sr[k] / pair.c[k]
      den = math.sqrt(var_a) * math.sqrt(var_b)
      pcc = min(max(cov / den, -1.0), 1.0) if den > 0 else 0.0
      row += [stream.w[k], mean_a, math.sqrt(var_a), math.sqrt(mean_a ** 2 + mean_b ** 2),
              math.sqrt(var_a ** 2 + var_b ** 2), cov, pcc]
    pair.last_t = max(pair.last_t, t)
    return row

  def features(self, p):
    t, v = p.timestamp, float(p.length)
    mi = _stream(self.mi, (p.src_mac, p.src_ip), t)
    mi.insert(t, v)
    h = _stream(self.h, p.src_ip, t)
    h.insert(t, v)
    channel = (p.src_ip, p.dst_ip)
    jit = _stream(self.jit, channel, t)
    jitter = max(t - jit.last_t, 0.0)
    hh = self._two_d(self.hh, self.hh_pairs, p.src_ip, p.dst_ip, t, v)
    jit.insert(t, jitter)
    if p.network == "arp":
      a, b = (p.src_mac,), (p.dst_mac,)
    else:
      a, b = (p.src_ip, p.src_port), (p.dst_ip, p.dst_port)
    hphp = self._two_d(self.hphp, self.hphp_pairs, a, b, t, v)
    return self._one_d(mi) + self._one_d(h) + hh + self._one_d(jit) + hphp
