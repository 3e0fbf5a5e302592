"""The one exception type for bad input data (files, layouts, caches)."""


class DataError(ValueError):
  """Bad input data. The message is one line that names the file (or folder) and the problem."""
