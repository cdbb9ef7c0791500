import tomllib

import pytest

from pipectl.spec.config import load_config
from pipectl.model.errors import UsageError
from pipectl.ops.scaffold import init_project
from pipectl.spec.loader import load_pipelines
def test_init_writes_a_valid_project(tmp_path):
    root = tmp_path / "proj"
    written = init_project(root)
    assert written == [root / "pipectl.toml", root / "pipelines" / "example.yaml"]
    text = (root / "pipectl.toml").read_text()
    assert text.count("# ") >= 6  # every key is explained
    data = tomllib.loads(text)
    assert data == {
        "pipectl": {"pipelines": ["pipelines/*.yaml"], "state_dir": ".pipectl", "timezone": "UTC",
                    "max_parallel": 8, "tick_budget": "50s"},
        "pools": {"warehouse": 2},
    }
    config = load_config(root)
    assert config.max_parallel == 8 and dict(config.pools) == {"warehouse": 2}
    result = load_pipelines(config)
    assert result.errors == []
    example = result.pipelines["example"]
    assert list(example.tasks) == ["extract", "clean", "report"]
    assert example.tasks["report"].needs == ("clean",)


def test_init_refuses_existing_project(tmp_path):
    (tmp_path / "pipectl.toml").write_text("# mine\n")
    with pytest.raises(UsageError):
        init_project(tmp_path)
    assert (tmp_path / "pipectl.toml").read_text() == "# mine\n"
    assert not (tmp_path / "pipelines").exists()
