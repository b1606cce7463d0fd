"""Synthetic source generator: daily CSV drops per the input contract, plus the planted truth.

``python -m dagster_project.synthetic --help`` or ``generate(Config(...))``.
"""

from .generate import GENERATOR_VERSION, Config, generate

__all__ = ["GENERATOR_VERSION", "Config", "generate"]
