"""The exported detector: the global model as a SavedModel plus one calibration file per client.

    RUN_DIR/export/manifest.json                 format name and version, dims, scoring settings
    RUN_DIR/export/saved_model/                  TF SavedModel of the global encoder f, head h and g
    RUN_DIR/export/calibration/<client>.npz      one client's calibration (`scoring.ClientCalibration`)

The SavedModel's functions (plain TensorFlow; scoring needs neither TFF nor tff_fcl.models):
    encode(rows float32 [N, 115])                                 -> {"z": [N, d]}            (Eq. 1)
    embed(rows [N, 115], moment_mean [d], moment_variance [d])    -> {"z_tilde": [N, d], "u": [N, p]}
                                                                                            (Eq. 2)
and the variable `reference` (g [p]). Rows are preprocessed (the client's log transform + z-score).
Scores are computed from (z~, u) in numpy by `tff_fcl.scoring`, the same code that evaluation runs.

A calibration file holds only its client's statistics: input preprocessing (mean [115], inv_std
[115], and the log-transform column mask it was fitted with), Eq. 2 moments [d], benign reference
(mean [d], shrunk precision [d, d], kNN reference rows [R, d]), per scorer its threshold and window,
and the scoring settings. Nothing of one client is needed to score another.

`score_file` streams a CSV (N-BaIoT columns) or a capture through preprocessing, the SavedModel,
the score, the per-packet flag and the windowed flag (`tff_fcl.windowing`), chunk by chunk, and writes
one output row per input row. CSV rows are parsed by a numba tokenizer (`_parse_block`, float32 results
equal to `tff_fcl.data.csv_reader`'s); any line it cannot parse is handed to `csv_reader.read_chunks`,
which gives the one-line error (file, row, column) or reads what it accepts. `--calibrate_from` calibrates a new client from its benign rows: the
first `CALIBRATION_TRAIN_SHARE` of them (in order) fit preprocessing, moments and reference, the rest
set thresholds and windows.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import urllib.parse
from typing import Iterator, Optional, Tuple

import numba
import numpy as np
import tensorflow as tf

from tff_fcl import scoring
from tff_fcl import windowing
from tff_fcl.data import csv_reader
from tff_fcl.data import layouts
from tff_fcl.data import preprocessing
from tff_fcl.data import schema
from tff_fcl.data.errors import DataError

FORMAT = "tff-fcl-detector"
FORMAT_VERSION = 1
EXPORT_DIR = "export"
MANIFEST = "manifest.json"
SAVED_MODEL = "saved_model"
CALIBRATION_DIR = "calibration"
CALIBRATION_TRAIN_SHARE = 0.75
MIN_CALIBRATION_ROWS = 20
CHUNK_ROWS = 65536
_EMBED_BATCH = 8192
_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap", ".cap.gz")


class ExportError(ValueError):
  """A model directory, client or input that cannot be scored; the message is one line."""


class DetectorModule(tf.Module):
  """f, h and g with the two traced functions of the module docstring.

  Evaluation embeds rows with these same functions (`tff_fcl.evaluation`), so that the exported
  SavedModel reproduces its scores exactly. The network's variables are tracked, not the Keras
  object, so the SavedModel holds plain TensorFlow only.
  """

  def __init__(self, network, reference_vector: np.ndarray):
    super().__init__(name="detector")
    self.model_variables = list(network.variables)
    self.reference = tf.Variable(np.asarray(reference_vector, np.float32), trainable=False,
                                 name="reference")
    self.embedding_dim = int(network.encode(tf.zeros([1, schema.NUM_FEATURES])).shape[-1])
    rows = tf.TensorSpec([None, schema.NUM_FEATURES], tf.float32, name="rows")
    moment = tf.TensorSpec([self.embedding_dim], tf.float32)

    def encode(rows):
      return {"z": network.encode(rows)}

    def embed(rows, moment_mean, moment_variance):
      z_tilde = network.standardize_embedding(network.encode(rows), (moment_mean, moment_variance))
      return {"z_tilde": z_tilde, "u": network.project(z_tilde)}

    self.encode = tf.function(encode, input_signature=[rows])
    self.embed = tf.function(embed, input_signature=[rows, moment, moment])


def encode_rows(encode_fn, x: np.ndarray, embedding_dim: int) -> np.ndarray:
  """z [N, d] from a `DetectorModule.encode` function (traced or loaded), in batches."""
  parts = [encode_fn(tf.constant(x[i:i + _EMBED_BATCH]))["z"].numpy() for i in range(0, len(x), _EMBED_BATCH)]
  return np.concatenate(parts) if parts else np.zeros((0, embedding_dim), np.float32)


def embed_rows(embed_fn, x: np.ndarray, moments, projection_dim: int) -> Tuple[np.ndarray, np.ndarray]:
  """(z~ [N, d], u [N, p]) from a `DetectorModule.embed` function (traced or loaded), in batches."""
  mean, variance = (tf.constant(np.asarray(m, np.float32)) for m in moments)
  outputs = [embed_fn(tf.constant(x[i:i + _EMBED_BATCH]), mean, variance) for i in range(0, len(x), _EMBED_BATCH)]
  if not outputs:
    return (np.zeros((0, len(moments[0])), np.float32), np.zeros((0, projection_dim), np.float32))
  return (np.concatenate([o["z_tilde"].numpy() for o in outputs]),
          np.concatenate([o["u"].numpy() for o in outputs]))


def calibration_filename(client: str) -> str:
  return urllib.parse.quote(client, safe="") + ".npz"


def _json_array(value) -> np.ndarray:
  return np.array(json.dumps(value))


def write_calibration(path: str, calibration: scoring.ClientCalibration) -> None:
  """One client's calibration as a compressed `.npz` (numbers in arrays, the rest as JSON)."""
  arrays = dict(
      format_version=np.array(FORMAT_VERSION), client=np.array(calibration.client),
      moment_mean=calibration.moments[0], moment_variance=calibration.moments[1],
      benign_mean=calibration.benign.mean, benign_precision=calibration.benign.precision,
      knn_rows=calibration.benign.knn_rows,
      thresholds=_json_array(calibration.thresholds),
      windows=_json_array({s: dataclasses.asdict(c) for s, c in calibration.windows.items()}),
      settings=_json_array(dataclasses.asdict(calibration.settings)))
  if calibration.preprocessing is not None:
    arrays.update(preprocessing_mean=calibration.preprocessing[0],
                  preprocessing_inv_std=calibration.preprocessing[1],
                  preprocessing_log_mask=preprocessing.LOG_MASK)
  with open(path, "wb") as f:
    np.savez_compressed(f, **arrays)


def read_calibration(path: str) -> scoring.ClientCalibration:
  name = os.path.basename(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {key: f[key] for key in f.files}
  except (OSError, ValueError) as e:
    raise ExportError(f"{path}: not a readable calibration file ({e})") from None
  version = int(arrays.get("format_version", -1))
  if version != FORMAT_VERSION:
    raise ExportError(f"{path}: calibration format version {version}, this tff-fcl reads {FORMAT_VERSION}")
  preprocessing_stats = None
  if "preprocessing_mean" in arrays:
    if not np.array_equal(arrays["preprocessing_log_mask"], preprocessing.LOG_MASK):
      raise ExportError(f"{name}: fitted with another log-transform column rule than this tff-fcl's")
    preprocessing_stats = (arrays["preprocessing_mean"], arrays["preprocessing_inv_std"])
  settings = json.loads(str(arrays["settings"]))
  return scoring.ClientCalibration(
      client=str(arrays["client"]), moments=(arrays["moment_mean"], arrays["moment_variance"]),
      benign=scoring.BenignReference(arrays["benign_mean"], arrays["benign_precision"], arrays["knn_rows"]),
      thresholds={s: float(t) for s, t in json.loads(str(arrays["thresholds"])).items()},
      windows={s: windowing.WindowChoice(**c) for s, c in json.loads(str(arrays["windows"])).items()},
      settings=scoring.ScoringSettings(**settings), preprocessing=preprocessing_stats)


def export_run(run_dir: str, network, reference_vector: np.ndarray, calibrations) -> str:
  """Writes RUN_DIR/export (replacing an older one); returns its path.

  Args:
    run_dir: the run's output directory.
    network: the trained global `EmbeddingNetwork`.
    reference_vector: g [p].
    calibrations: client id -> `scoring.ClientCalibration` (`evaluate_devices(...)[scorer]["calibrations"]`).
  """
  calibrations = dict(calibrations)
  if not calibrations:
    raise ExportError("export_run needs at least one client calibration.")
  settings = next(iter(calibrations.values())).settings
  module = DetectorModule(network, reference_vector)
  target = os.path.join(run_dir, EXPORT_DIR)
  os.makedirs(run_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=run_dir)
  try:
    tf.saved_model.save(module, os.path.join(staging, SAVED_MODEL))
    os.makedirs(os.path.join(staging, CALIBRATION_DIR))
    for client, calibration in calibrations.items():
      write_calibration(os.path.join(staging, CALIBRATION_DIR, calibration_filename(client)), calibration)
    manifest = dict(format=FORMAT, format_version=FORMAT_VERSION, num_features=schema.NUM_FEATURES,
                    embedding_dim=module.embedding_dim,
                    projection_dim=int(np.size(reference_vector)),
                    settings=dataclasses.asdict(settings), clients=sorted(calibrations))
    with open(os.path.join(staging, MANIFEST), "w") as f:
      json.dump(manifest, f, indent=2)
    if os.path.exists(target):
      shutil.rmtree(target)
    os.replace(staging, target)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return target


def _is_capture(path: str) -> bool:
  return path.lower().endswith(_CAPTURE_SUFFIXES)


class ExportedDetector:
  """A loaded export: the SavedModel, g, and the clients' calibration files (read on demand)."""

  def __init__(self, model_dir: str):
    directory = model_dir
    if not os.path.exists(os.path.join(directory, MANIFEST)):
      directory = os.path.join(model_dir, EXPORT_DIR)
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.exists(manifest_path):
      raise ExportError(f"{model_dir}: no exported model ({EXPORT_DIR}/{MANIFEST} not found); "
                        "train with programs.train to write one")
    try:
      with open(manifest_path) as f:
        manifest = json.load(f)
    except (OSError, ValueError) as e:
      raise ExportError(f"{manifest_path}: unreadable manifest ({e})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
      raise ExportError(f"{model_dir}: incompatible model export ({manifest.get('format')!r} version "
                        f"{manifest.get('format_version')}); this tff-fcl reads {FORMAT!r} version "
                        f"{FORMAT_VERSION}")
    self.directory = directory
    self.manifest = manifest
    self.settings = scoring.ScoringSettings(**manifest["settings"])
    self._model = tf.saved_model.load(os.path.join(directory, SAVED_MODEL))
    self.reference_vector = self._model.reference.numpy()

  @property
  def clients(self) -> list:
    names = os.listdir(os.path.join(self.directory, CALIBRATION_DIR))
    return sorted(urllib.parse.unquote(n[:-len(".npz")]) for n in names if n.endswith(".npz"))

  def _calibration_path(self, client: str) -> str:
    return os.path.join(self.directory, CALIBRATION_DIR, calibration_filename(client))

  def calibration(self, client: str) -> scoring.ClientCalibration:
    path = self._calibration_path(client)
    if not os.path.exists(path):
      raise ExportError(f"{self.directory}: unknown client {client!r}; known clients: "
                        f"{', '.join(self.clients)} (calibrate a new device with --calibrate_from)")
    return read_calibration(path)

  def save_calibration(self, calibration: scoring.ClientCalibration) -> str:
    path = self._calibration_path(calibration.client)
    write_calibration(path, calibration)
    return path

  def encode(self, x: np.ndarray) -> np.ndarray:
    """z [N, d] of preprocessed rows [N, 115]."""
    return encode_rows(self._model.encode, x, self.manifest["embedding_dim"])

  def embed(self, x: np.ndarray, moments) -> Tuple[np.ndarray, np.ndarray]:
    """(z~ [N, d], u [N, p]) of preprocessed rows [N, 115] with the client's Eq. 2 moments."""
    return embed_rows(self._model.embed, x, moments, self.manifest["projection_dim"])

  def preprocess(self, raw: np.ndarray, calibration: scoring.ClientCalibration) -> np.ndarray:
    """The client's own preprocessing of raw feature rows [N, 115]."""
    if calibration.preprocessing is None:
      raise ExportError(f"client {calibration.client!r} has no preprocessing statistics in its calibration; "
                        "recalibrate it with --calibrate_from")
    return preprocessing.Standardizer(*calibration.preprocessing).apply(raw)

  def scores(self, raw: np.ndarray, calibration: scoring.ClientCalibration, scorer: str) -> np.ndarray:
    """Anomaly scores [N] of raw feature rows [N, 115] for the calibrated client."""
    embeddings = self.embed(self.preprocess(raw, calibration), calibration.moments)
    return calibration.scores(embeddings, scorer, self.reference_vector)

  def calibrate(self, client: str, benign_raw: np.ndarray, source: str = "benign rows"):
    """A new client's calibration from its benign raw rows [N, 115] in arrival order."""
    if len(benign_raw) < MIN_CALIBRATION_ROWS:
      raise ExportError(f"{source}: {len(benign_raw)} benign rows are too few to calibrate a client "
                        f"(need at least {MIN_CALIBRATION_ROWS})")
    split = int(len(benign_raw) * CALIBRATION_TRAIN_SHARE)
    standardizer = preprocessing.Standardizer.fit(benign_raw[:split])
    train_x, val_x = standardizer.apply(benign_raw[:split]), standardizer.apply(benign_raw[split:])
    z = self.encode(train_x)
    moments = (z.mean(axis=0), z.var(axis=0))
    return scoring.fit_calibration(
        client, moments, self.embed(train_x, moments), self.embed(val_x, moments),
        reference_vector=self.reference_vector, settings=self.settings,
        preprocessing=(standardizer.mean, standardizer.inv_std))


_POWERS = np.array([10.0 ** e for e in range(23)])


@numba.njit(cache=True)
def _parse_block(buf, out, ncols, powers):
  """Parses complete CSV lines of numbers (bytes as uint8 [n]) into out [rows, ncols].

  Returns (rows parsed, 0) or (row, 1) at the first line that is not `ncols` plain decimal numbers
  (the caller then defers to the validating reader). Mantissas of at most 15 significant digits with
  a decimal exponent |e| <= 22 are exact (Clinger's fast path); longer ones are within 2 ulp.
  """
  i, n, row, col = 0, len(buf), 0, 0
  while i < n:
    if col == 0 and (buf[i] == 10 or buf[i] == 13):  # blank line
      i += 1
      continue
    negative = False
    if buf[i] == 45 or buf[i] == 43:
      negative = buf[i] == 45
      i += 1
    mantissa, digits, exponent, seen = 0, 0, 0, False
    while i < n and 48 <= buf[i] <= 57:
      seen = True
      if mantissa == 0 and buf[i] == 48:
        pass
      elif digits < 18:
        mantissa = mantissa * 10 + (buf[i] - 48)
        digits += 1
      else:
        exponent += 1
      i += 1
    if i < n and buf[i] == 46:
      i += 1
      while i < n and 48 <= buf[i] <= 57:
        seen = True
        if mantissa == 0 and buf[i] == 48:
          exponent -= 1
        elif digits < 18:
          mantissa = mantissa * 10 + (buf[i] - 48)
          digits += 1
          exponent -= 1
        i += 1
    if not seen:
      return row, 1
    if i < n and (buf[i] == 101 or buf[i] == 69):
      i += 1
      sign = 1
      if i < n and (buf[i] == 45 or buf[i] == 43):
        sign = -1 if buf[i] == 45 else 1
        i += 1
      value, seen = 0, False
      while i < n and 48 <= buf[i] <= 57:
        value = min(value * 10 + (buf[i] - 48), 100000)
        seen = True
        i += 1
      if not seen:
        return row, 1
      exponent += sign * value
    if mantissa == 0:
      number = 0.0
    elif digits <= 15 and 0 <= exponent <= 22:
      number = float(mantissa) * powers[exponent]
    elif digits <= 15 and -22 <= exponent < 0:
      number = float(mantissa) / powers[-exponent]
    else:
      number = float(mantissa) * 10.0 ** exponent
    if not np.isfinite(number) or col >= ncols:
      return row, 1
    out[row, col] = -number if negative else number
    col += 1
    if i < n and buf[i] == 44:
      i += 1
    else:
      if i < n and buf[i] == 13:
        i += 1
      if i >= n or buf[i] != 10 or col != ncols:
        return row, 1
      i += 1
      row += 1
      col = 0
  return row, 0


def _csv_chunks(path: str, chunk_rows: int) -> Iterator[np.ndarray]:
  """float32 [<= chunk_rows, 115] blocks of a .csv / .csv.gz with the N-BaIoT header, parsed by
  `_parse_block`; a block it cannot parse is validated by `csv_reader.read_chunks`, whose one-line
  error names the file, row and column (or, if that reader accepts it, is read by that reader)."""
  source = layouts.SourceFile(path=path, device="input", kind="benign")
  with csv_reader.open_binary(source) as stream:
    header = stream.readline()
    if not header.strip():
      raise DataError(f"{path}: empty file (no header, no rows)")
    csv_reader.check_header(path, [c.strip().strip('"') for c in header.decode("utf-8-sig").strip().split(",")])
    tail, rows_done, block_bytes = b"", 0, chunk_rows * 1024
    while True:
      data = stream.read(block_bytes)
      text = tail + data
      if data:
        cut = text.rfind(b"\n") + 1
        text, tail = text[:cut], text[cut:]
      elif text and not text.endswith(b"\n"):
        text += b"\n"
      if not text:
        if not data:
          break
        block_bytes *= 2
        continue
      out = np.empty((text.count(b"\n"), schema.NUM_FEATURES))
      parsed, failed = _parse_block(np.frombuffer(text, np.uint8), out, schema.NUM_FEATURES, _POWERS)
      if failed:  # read_chunks raises the precise error, or reads what this parser does not
        skip = rows_done
        for rows in csv_reader.read_chunks(source, chunk_rows=chunk_rows):
          if skip < len(rows):
            yield rows[skip:]
          skip = max(0, skip - len(rows))
        return
      for start in range(0, parsed, chunk_rows):
        yield out[start:min(parsed, start + chunk_rows)].astype(np.float32)
      rows_done += parsed
      if not data:
        break
  if rows_done == 0:
    raise DataError(f"{path}: empty file (a header but no rows)")


def iter_rows(path: str, *, device_mac: Optional[str] = None, chunk_rows: int = CHUNK_ROWS
              ) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
  """(raw rows float32 [<= chunk_rows, 115], timestamps [n] or None) of a CSV or a capture, streamed.

  Captures (.pcap / .pcapng, optionally .gz) go through the feature extractor, restricted to the
  device's packets when `device_mac` is given; anything else is read as an N-BaIoT CSV (.csv / .csv.gz).
  """
  if not os.path.exists(path):
    raise ExportError(f"{path}: file not found")
  if not _is_capture(path):
    if device_mac is not None:
      raise ExportError(f"{path}: --device_mac applies to captures only, not to CSV files")
    for rows in _csv_chunks(path, chunk_rows):
      yield rows, None
    return
  from tff_fcl import features  # pylint: disable=g-import-not-at-top  (numba compiles on import)
  mac = features.parse_mac(device_mac) if device_mac is not None else None
  report = features.ParseReport()
  config = features.AfterImageConfig()
  for packets, rows in features.iter_feature_chunks([path], report, device_mac=mac, config=config):
    yield rows.astype(np.float32), np.array([p.timestamp for p in packets])
  if report.packets == 0:
    whose = f" to or from {device_mac}" if device_mac else ""
    raise ExportError(f"{path}: no packets{whose} ({report.summary()})")


def read_all_rows(path: str, *, device_mac: Optional[str] = None) -> np.ndarray:
  """All raw rows [N, 115] of a (benign calibration) CSV or capture, in order."""
  blocks = [rows for rows, _ in iter_rows(path, device_mac=device_mac)]
  return np.concatenate(blocks) if blocks else np.zeros((0, schema.NUM_FEATURES), np.float32)


@dataclasses.dataclass
class ScoreSummary:
  client: str
  scorer: str
  threshold: float
  window: int
  window_mode: str
  rows: int = 0
  flagged: int = 0
  flagged_windowed: int = 0
  first_alert_row: Optional[int] = None  # first windowed alert (row index from 0)
  first_alert_time: Optional[float] = None  # its capture timestamp (captures only)
  calibration_written: Optional[str] = None

  def lines(self) -> list:
    share = lambda n: f"{n / self.rows:.2%}" if self.rows else "n/a"
    if self.first_alert_row is None:
      alert = "none"
    else:
      alert = f"row {self.first_alert_row}" + (
          f", time {self.first_alert_time:.6f}" if self.first_alert_time is not None else "")
    lines = [f"client {self.client}: {self.rows} rows scored with {self.scorer} "
             f"(threshold {self.threshold:.6g}, {self.window_mode} window {self.window})",
             f"flagged: {self.flagged} per packet ({share(self.flagged)}), "
             f"{self.flagged_windowed} windowed ({share(self.flagged_windowed)})",
             f"first windowed alert: {alert}"]
    if self.calibration_written:
      lines.insert(0, f"new calibration written to {self.calibration_written}")
    return lines


def score_file(model_dir: str, client: str, input_path: str, output: str, *,
               device_mac: Optional[str] = None, scorer: Optional[str] = None,
               calibrate_from: Optional[str] = None, chunk_rows: int = CHUNK_ROWS) -> ScoreSummary:
  """Scores every row of a CSV or capture for `client`; writes OUTPUT (CSV) and returns the summary.

  Output columns: row, [timestamp,] score, flag, windowed_flag. With `calibrate_from` (benign rows of a
  client that has no calibration yet, a CSV or capture) the client is calibrated first and its
  calibration file is added to the export.
  """
  detector = ExportedDetector(model_dir)
  written = None
  if calibrate_from is not None:
    if client in detector.clients:
      raise ExportError(f"client {client!r} already has a calibration in {detector.directory}; "
                        "drop --calibrate_from or use a new --client id")
    benign_mac = device_mac if _is_capture(calibrate_from) else None
    calibration = detector.calibrate(client, read_all_rows(calibrate_from, device_mac=benign_mac),
                                     source=calibrate_from)
    written = detector.save_calibration(calibration)
  else:
    calibration = detector.calibration(client)
  scorer = scorer or calibration.settings.scorers[0]
  if scorer not in calibration.thresholds:
    raise ExportError(f"client {client!r} has no threshold for scorer {scorer!r}; "
                      f"it has {', '.join(calibration.thresholds)}")
  threshold = calibration.thresholds[scorer]
  window, mode = calibration.windows[scorer].window, calibration.settings.window_mode
  summary = ScoreSummary(client, scorer, threshold, window, mode, calibration_written=written)
  stream = windowing.RollingWindow(window)
  partial = output + ".partial"
  try:
    with open(partial, "w") as f:
      input_mac = device_mac if _is_capture(input_path) else None
      for raw, timestamps in iter_rows(input_path, device_mac=input_mac, chunk_rows=chunk_rows):
        if summary.rows == 0:
          f.write(",".join(["row"] + (["timestamp"] if timestamps is not None else [])
                           + ["score", "flag", "windowed_flag"]) + "\n")
        scores = detector.scores(raw, calibration, scorer)
        flags = scores > threshold
        windowed = windowing.windowed_flags(
            windowing.window_statistic(scores, threshold, window, mode, stream), threshold, mode)
        rows = np.arange(summary.rows, summary.rows + len(scores))
        columns = [rows] + ([timestamps] if timestamps is not None else []) + [
            scores, flags.astype(int), windowed.astype(int)]
        line = "%d," + ("%r," if timestamps is not None else "") + "%r,%d,%d\n"
        f.writelines(line % values for values in zip(*(c.tolist() for c in columns)))
        hits = np.flatnonzero(windowed)
        if summary.first_alert_row is None and hits.size:
          summary.first_alert_row = int(rows[hits[0]])
          if timestamps is not None:
            summary.first_alert_time = float(timestamps[hits[0]])
        summary.rows += len(scores)
        summary.flagged += int(flags.sum())
        summary.flagged_windowed += int(windowed.sum())
    os.replace(partial, output)
  except BaseException:
    if os.path.exists(partial):
      os.remove(partial)
    raise
  return summary
