"""Config loading: every bad value gives one ConfigError naming the field."""

import pytest

from crowdsteer.config import load_config, parse_yaml, validate_section
from crowdsteer.errors import ConfigError


@pytest.mark.parametrize("data, field, words", [
    ({"game": {"height": -3}}, "game.height", "greater than 0"),
    ({"game": {"width": 0}}, "game.width", "greater than 0"),
    ({"game": {"heigth": 3}}, "game.heigth", "allowed here:"),
    ({"gmae": {}}, "gmae", "did you mean 'game'"),
    ({"game": {"name": "crwd"}}, "game.name", "did you mean 'crowd'"),
    ({"game": {}, "learner": {"name": "exact", "temprature": 1}}, "learner.temprature",
     "temperature"),
    ({"game": {"congestion": {"kind": "quad"}}}, "game.congestion.kind", "'kernel' or 'log'"),
    ({"game": {"height": "ten"}}, "game.height", "integer"),
    ({"game": {}, "seed": -1}, "seed", ">= 0"),
    ({"game": {"horizon": 1, "noise": 0.2}}, "game", "local"),
    ({"game": {}, "learner": {"name": "exact", "temperature": -0.1}}, "learner.temperature",
     "greater than or equal to 0"),
    ({"learner": {}}, "game", "required"),
])
def test_bad_values_name_the_field(data, field, words):
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert info.value.field == field
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("section, raw, field, got", [
    ("modifier", {"name": "tolls", "bounds": [False, True]}, "modifier.bounds.0", "'false'"),
    ("learner", {"name": "ppo", "hidden": [True, 64]}, "learner.hidden.0", "'true'"),
    ("learner", {"name": "ppo", "hidden": (64, False)}, "learner.hidden.1", "'false'"),
])
def test_booleans_inside_number_lists_are_refused(section, raw, field, got):
    """Review defect 2: true/false inside a list of numbers passed as 1/0 (tolls bounds
    [false, true] became (0.0, 1.0)); refused like a top-level one, naming field and index."""
    with pytest.raises(ConfigError) as info:
        validate_section(section, raw)
    assert info.value.field == field
    assert got in str(info.value) and "\n" not in str(info.value)


def test_malformed_yaml_names_the_line():
    with pytest.raises(ConfigError, match="line 3"):
        parse_yaml("game:\n  height: 3\n   width: 4\n", "c.yaml")


def test_defaults_are_filled_and_resolved():
    cfg = load_config({"game": {"height": 3, "width": 4}})
    out = cfg.resolved()
    assert out["learner"]["name"] == "exact"
    assert out["game"]["moves"] == "any"
    # the resolved config loads again to the same thing
    assert load_config(out).resolved() == out
