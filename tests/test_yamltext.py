"""User YAML (configs, prompt sets, recipe books) with its alias expansion bounded."""
from __future__ import annotations

import pytest
import yaml

from affectvlm import yamltext
from affectvlm.errors import ConfigError


def _bomb(depth: int) -> str:
    lines = ['l0: &l0 ["xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", '
             '"xxxxxxxxxx", "xxxxxxxxxx"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return "\n".join(lines + [f"data: *l{depth - 1}"]) + "\n"


def test_a_few_hundred_bytes_of_aliases_are_refused_before_they_are_built(tmp_path):
    """Nine anchors nested eight deep (459 bytes) took 4.6 GB and 11 s in the app's --config check."""
    with pytest.raises(yaml.YAMLError, match="aliases expand"):
        yamltext.safe_load(_bomb(8))
    assert yamltext.safe_load("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}  # ordinary anchors still work
    assert len(yamltext.safe_load(_bomb(3))["data"]) == 9
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        yamltext.safe_load("[" * 20_000 + "]" * 20_000)
    from affectvlm.trainconfig import load_yaml

    (tmp_path / "c.yaml").write_text(_bomb(8))
    with pytest.raises(ConfigError, match="c.yaml: invalid YAML.*aliases expand"):
        load_yaml(tmp_path / "c.yaml")
