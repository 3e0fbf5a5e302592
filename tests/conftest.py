"""Test-session set-up: TFF workers are always shut down, whatever happens in the tests."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tff_fcl import runtime  # pylint: disable=g-import-not-at-top

runtime.install_worker_cleanup()


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  runtime.shutdown_tff_workers()
