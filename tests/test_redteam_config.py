"""Issue 20, YAML: a "billion laughs" document is refused before it expands (H7), an error
never prints a whole value, repeated keys and true/false for numbers are refused. Through
the CLI: one line, exit 2."""

import pytest

from crowdsteer.config import MAX_YAML_NODES, parse_yaml
from crowdsteer.errors import ConfigError
from tests.test_crash import crowdsteer
from tests.test_redteam_folders import one_line


def bomb(levels, width=9):
    """Level 0 holds ``width`` strings, level k ``width`` aliases of level k-1: expanded,
    ``width ** (levels + 1)`` strings from a document of a few hundred bytes."""
    parts = ["&L0 [" + ", ".join(["lol"] * width) + "]"]
    parts += [f"&L{k} [" + ", ".join([f"*L{k - 1}"] * width) + "]" for k in range(1, levels + 1)]
    return "[" + ", ".join(parts) + "]"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    text = f"game: {{name: crowd}}\nseed: {bomb(8)}\n"  # 9**9 = 387,420,489 strings
    assert len(text) < 600
    (tmp_path / "bomb.yaml").write_text(text)
    line = one_line(crowdsteer("solve", tmp_path / "bomb.yaml", "--out", tmp_path / "o"))
    assert "bomb.yaml" in line and "expands" in line and f"{MAX_YAML_NODES:,}" in line
    assert len(line) < 300 and "lol" not in line
    assert not (tmp_path / "o").exists()


def test_the_limit_counts_expanded_values_not_bytes():
    # 9**5 = 59,049 strings (plus the lists holding them) pass; 9**6 = 531,441 do not
    assert len(parse_yaml(f"seed: {bomb(4)}")["seed"]) == 5
    with pytest.raises(ConfigError, match="expands"):
        parse_yaml(f"seed: {bomb(5)}")
    anchors = "a: &x [1, 2, 3]\nb: *x\nc: {<<: {k: 1}, k: 2}\n"  # plain aliases and merges
    assert parse_yaml(anchors) == {"a": [1, 2, 3], "b": [1, 2, 3], "c": {"k": 2}}


@pytest.mark.parametrize("text, words", [
    ("game: {name: crowd}\noptimiser: {evaluations: 3}\noptimiser: {evaluations: 4}\n",
     ["line 3", "'optimiser' appears twice"]),
    ("game: {name: crowd, height: 3, height: 4}\n", ["line 1", "'height' appears twice"]),
    ("game: {name: crowd}\noptimiser: {evaluations: true}\n",
     ["optimiser.evaluations", "valid integer", "'true'"]),
    ("game: {name: crowd}\nlearner: {name: exact, temperature: false}\n",
     ["learner.temperature", "valid number", "'false'"]),
    ("game: {name: crowd}\nseed: [" + ", ".join(map(str, range(5000))) + "]\n",
     ["seed", "[0, 1, 2, 3, ...]"]),
])
def test_repeated_keys_and_booleans_for_numbers_are_refused(tmp_path, text, words):
    (tmp_path / "c.yaml").write_text(text)
    line = one_line(crowdsteer("solve", tmp_path / "c.yaml", "--out", tmp_path / "o"))
    assert all(w in line for w in words), line
    assert len(line) < 300
