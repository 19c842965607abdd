"""Fixtures of the outcomes tests (test_outcomes*.py): the classifier and regressor built once
per module, a clock moved by hand, and a wired pipeline."""

from __future__ import annotations

import pytest

from driftgauge.baseline import Baseline
from driftgauge.config import Config
from tests.feedback_support import Clock, Pipeline, build, wire


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """The three-class classifier with feedback (positive class a, P(a) in p_a)."""
    return build(tmp_path_factory.mktemp("classifier"), segments={"features": ["region"], "top": 2})


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    return build(tmp_path_factory.mktemp("regressor"), regression=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pipeline(classifier: tuple[Config, Baseline], clock: Clock) -> Pipeline:
    return wire(*classifier, clock)
