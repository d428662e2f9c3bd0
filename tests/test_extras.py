"""Issue 28, point 7: `pip install "streamconv[all]"` installs every optional feature."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NOT_FEATURES = {"test", "bench", "all"}  # what developers install, and the union itself


def test_all_extra_holds_every_feature() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    features = set(extras) - NOT_FEATURES
    assert features >= {"s3", "gcs", "view", "dask", "meshes"}
    named: set[str] = set()
    for line in extras["all"]:
        requirement = Requirement(line)
        assert requirement.name == project["name"], "[all] names our own extras, not copies of them"
        named |= requirement.extras
    assert named == features
