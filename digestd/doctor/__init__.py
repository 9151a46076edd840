"""`digestd doctor`: check a setup before the first real send (see `run_doctor`)."""

from digestd.doctor.result import Check
from digestd.doctor.run import run_doctor

__all__ = ["Check", "run_doctor"]
