"""Finds N-BaIoT-style CSV files in a folder and labels each one from its path.

Two layouts are recognised, mixed freely in one folder, each file plain (`.csv`), gzip (`.csv.gz`) or
a one-CSV zip (`.csv.zip` / `.zip`):

    UCI:    <Device>/benign_traffic.csv
            <Device>/<family>_attacks/<kind>.csv           any family: gafgyt, mirai, ddos, ...
            <Device>/<family>_attacks.rar | .zip           archive whose CSV members are the kinds
    Kaggle: <n>.benign.csv, <n>.<family>.<kind>.csv        n = 1..9 in N-BaIoT's documented order

Labels come from the path: kind "benign" (label 0) or "<family>/<kind>" (label 1), e.g.
"gafgyt/tcp", "mirai/udpplain", "ddos/amp.TCP.syn.optionallyACK.optionallysamePort". The device is the
client. Files that fit neither layout are skipped with a warning.

`.rar` archives are opened with `rarfile`, which needs an external backend (`unrar`, `unar`,
`bsdtar` or `7z`); without one, discovery stops with a message that says how to extract them.
An attack pool (`discover_pool`) is any folder tree of such CSV files; its kinds are taken from
`<family>_attacks/<kind>` when the path has that form, else "pool/<file name>".
"""

import dataclasses
import logging
import os
import re
import typing
import zipfile

from tff_fcl.data.errors import DataError

# Device order of the Kaggle mirror (file name prefix 1..9), as documented with the data set.
KAGGLE_DEVICES = (
    "Danmini_Doorbell", "Ecobee_Thermostat", "Ennio_Doorbell", "Philips_B120N10_Baby_Monitor",
    "Provision_PT_737E_Security_Camera", "Provision_PT_838_Security_Camera",
    "Samsung_SNH_1011_N_Webcam", "SimpleHome_XCS7_1002_WHT_Security_Camera",
    "SimpleHome_XCS7_1003_WHT_Security_Camera")
BENIGN = "benign"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".zip")
ARCHIVE_SUFFIXES = (".rar", ".zip")
# Checksum lists that sit beside the data (data/demo/SHA256SUMS): skipped without a warning.
CHECKSUM_FILES = ("SHA256SUMS", "SHA256SUMS.txt", "MD5SUMS")
_ATTACK_DIR = re.compile(r"^(?P<family>[A-Za-z0-9][\w.-]*)_attacks$")
_KAGGLE = re.compile(r"^(?P<n>\d+)\.(?P<rest>.+)$")
RAR_HELP = ("needs an unrar backend (install one of unrar, unar, bsdtar or 7z), or extract it first, "
            "e.g. `cd {folder} && unrar x {name}` (or `7z x {name}`), so that {folder}/{stem}/<kind>.csv exist")


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """One CSV of rows: where it is, which device it belongs to and what traffic it holds."""
  path: str  # file on disk (the archive for archive members)
  device: str
  kind: str  # "benign" or "<family>/<kind>"
  member: typing.Optional[str] = None  # CSV member inside a .zip / .rar archive

  @property
  def label(self) -> int:
    return 0 if self.kind == BENIGN else 1

  @property
  def name(self) -> str:
    """How messages refer to the file: `path` or `archive.rar:member.csv`."""
    return f"{self.path}:{self.member}" if self.member else self.path


def _strip_csv_suffix(name: str) -> typing.Optional[str]:
  lower = name.lower()
  for suffix in (".csv.gz", ".csv.zip", ".csv", ".zip"):
    if lower.endswith(suffix):
      return name[: -len(suffix)]
  return None


def _single_csv_member(path: str) -> typing.Optional[str]:
  """The CSV member of a one-CSV zip, or None for a plain or gzip file."""
  if not path.lower().endswith(".zip"):
    return None
  members = _archive_csv_members(path)
  if len(members) != 1:
    raise DataError(f"{path}: expected exactly one CSV inside the zip, found {len(members)}")
  return members[0]


def _archive_csv_members(path: str) -> list:
  if path.lower().endswith(".zip"):
    try:
      with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
      raise DataError(f"{path}: corrupt or truncated zip ({error})") from None
  else:
    names = _rar_members(path)
  return sorted(n for n in names if n.lower().endswith(".csv") and not n.startswith("__MACOSX"))


def _rar_members(path: str) -> list:
  import rarfile  # pylint: disable=g-import-not-at-top
  folder, name = os.path.split(path)
  stem = name[: -len(".rar")]
  try:
    rarfile.tool_setup()
  except rarfile.RarCannotExec:
    raise DataError(f"{path}: .rar archive " + RAR_HELP.format(folder=folder or ".", name=name, stem=stem)) from None
  try:
    with rarfile.RarFile(path) as archive:
      return archive.namelist()
  except (rarfile.Error, OSError) as error:
    raise DataError(f"{path}: corrupt or truncated rar archive ({error})") from None


def _device_files(device_dir: str, device: str, unrecognised: list) -> list:
  found = []
  for entry in sorted(os.listdir(device_dir)):
    path = os.path.join(device_dir, entry)
    if os.path.isdir(path):
      match = _ATTACK_DIR.match(entry)
      if not match:
        unrecognised.append(path)
        continue
      for name in sorted(os.listdir(path)):
        kind = _strip_csv_suffix(name)
        file_path = os.path.join(path, name)
        if kind is None or not os.path.isfile(file_path):
          unrecognised.append(file_path)
          continue
        found.append(SourceFile(file_path, device, f"{match['family']}/{kind}",
                                _single_csv_member(file_path)))
      continue
    stem = _strip_csv_suffix(entry)
    archive_stem = entry.rsplit(".", 1)[0] if entry.lower().endswith(ARCHIVE_SUFFIXES) else None
    if stem == "benign_traffic":
      found.append(SourceFile(path, device, BENIGN, _single_csv_member(path)))
    elif archive_stem and _ATTACK_DIR.match(archive_stem):
      family = _ATTACK_DIR.match(archive_stem)["family"]
      for member in _archive_csv_members(path):
        kind = _strip_csv_suffix(os.path.basename(member))
        found.append(SourceFile(path, device, f"{family}/{kind}", member))
    else:
      unrecognised.append(path)
  return found


def _kaggle_file(path: str, name: str) -> typing.Optional[SourceFile]:
  stem = _strip_csv_suffix(name)
  match = _KAGGLE.match(stem or "")
  if not match or not 1 <= int(match["n"]) <= len(KAGGLE_DEVICES):
    return None
  device = KAGGLE_DEVICES[int(match["n"]) - 1]
  rest = match["rest"]
  if rest == BENIGN:
    return SourceFile(path, device, BENIGN, _single_csv_member(path))
  if "." not in rest:
    return None
  family, kind = rest.split(".", 1)
  return SourceFile(path, device, f"{family}/{kind}", _single_csv_member(path))


def _check_unique(files: list) -> None:
  seen = {}
  for source in files:
    key = (source.device, source.kind)
    if key in seen:
      raise DataError(f"{source.name}: device {source.device} has a second {source.kind} file "
                      f"(also {seen[key].name}); keep one of them")
    seen[key] = source


def discover(input_dir: str) -> list:
  """All recognised source files under `input_dir`, sorted by (device, kind); warns about the rest."""
  if not os.path.isdir(input_dir):
    raise DataError(f"{input_dir}: input folder does not exist")
  found, unrecognised = [], []
  for entry in sorted(os.listdir(input_dir)):
    path = os.path.join(input_dir, entry)
    if os.path.isdir(path):
      device_files = _device_files(path, entry, unrecognised)
      found.extend(device_files)
    else:
      source = _kaggle_file(path, entry)
      if source is None:
        unrecognised.append(path)
      else:
        found.append(source)
  for path in unrecognised:
    if os.path.basename(path) in CHECKSUM_FILES:
      continue  # the data set's own checksum list, not data
    logging.warning("Skipping unrecognised file %s (not in the UCI or Kaggle N-BaIoT layout)", path)
  if not found:
    raise DataError(f"{input_dir}: no recognised N-BaIoT files (expected <Device>/benign_traffic.csv, "
                    "<Device>/<family>_attacks/<kind>.csv or <n>.benign.csv, <n>.<family>.<kind>.csv; "
                    ".csv, .csv.gz or .zip)")
  _check_unique(found)
  return sorted(found, key=lambda s: (s.device, s.kind != BENIGN, s.kind))


def discover_pool(pool_dir: str) -> list:
  """Every CSV file under `pool_dir` (any folder structure), as attack sources of device "pool"."""
  if not os.path.isdir(pool_dir):
    raise DataError(f"{pool_dir}: attack pool folder does not exist")
  found = []
  for root, dirs, names in os.walk(pool_dir):
    dirs.sort()
    for name in sorted(names):
      path = os.path.join(root, name)
      stem = _strip_csv_suffix(name)
      if stem is None:
        logging.warning("Skipping unrecognised file %s in the attack pool", path)
        continue
      match = _ATTACK_DIR.match(os.path.basename(root))
      kind = f"{match['family']}/{stem}" if match else f"pool/{stem}"
      found.append(SourceFile(path, "pool", kind, _single_csv_member(path)))
  if not found:
    raise DataError(f"{pool_dir}: no CSV files in the attack pool folder")
  return found
