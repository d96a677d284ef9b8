"""Typed configs and YAML loading.

A config file has sections; each named section (``game``, ``learner``, and, for the
meta-agent, ``modifier``, ``objective``, ``optimiser``) holds a ``name`` that picks a
registered implementation whose own pydantic model (``extra="forbid"``) validates the
rest. Every error becomes one :class:`~crowdsteer.errors.ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field

from crowdsteer.config_base import Strict, shown, validate  # noqa: F401  (re-exported)
from crowdsteer.errors import ConfigError
from crowdsteer.registry import Registry, unknown_name_message


@dataclass(frozen=True)
class Section:
    """A named config section dispatched through a registry."""

    registry: Registry
    default: str | None
    """Name used when the section or its ``name`` is missing (``None``: section required)."""


_SECTIONS: dict[str, Section] = {}
_PLAIN: dict[str, type[BaseModel]] = {}


def section(key: str, registry: Registry, default: str | None) -> None:
    """Declare a named section; its registry's builders carry a ``.config`` model."""
    _SECTIONS[key] = Section(registry, default)


def plain_section(key: str, model: type[BaseModel]) -> None:
    """Declare a section validated by one model (no ``name`` dispatch)."""
    _PLAIN[key] = model


@dataclass(frozen=True)
class Config:
    """A validated configuration.

    Attributes
    ----------
    seed
        Seed of the run's ``np.random.Generator``.
    sections
        Validated model of each section present (or defaulted), by section key.
    base_dir
        Folder that relative file paths in the config are read from.
    """

    seed: int = 0
    sections: dict[str, BaseModel] = field(default_factory=dict)
    base_dir: Path = Path(".")

    def __getitem__(self, key: str) -> Any:
        return self.sections.get(key)

    def resolved(self) -> dict[str, Any]:
        """Plain dict with every default filled in (for ``config.yaml`` in a run folder)."""
        out: dict[str, Any] = {"seed": self.seed}
        for key, model in self.sections.items():
            out[key] = model.model_dump(mode="json", exclude_none=True)
        return out

    def replace(self, key: str, model: BaseModel) -> "Config":
        return Config(self.seed, {**self.sections, key: model}, self.base_dir)


class FiniteNConfig(Strict):
    """The ``finite_n`` section (used by ``crowdsteer solve``; the study itself is
    :func:`crowdsteer.finite_n.study`, which imports this module, not the other way)."""

    agents: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: [100, 1000, 10000], min_length=1)
    """The population sizes ``N`` to simulate."""
    learner: dict[str, Any] = Field(default_factory=lambda: {"name": "fictitious_play"})
    """The model-free learner (its ``agents`` is set to each ``N``; ``temperature`` defaults
    to the main learner's)."""
    seeds: Annotated[int, Field(gt=0)] = 3
    """Independent repetitions per ``N`` (the table reports their mean)."""


def _ensure_sections() -> None:
    """Declare the core sections on first use (lazily: the modules that define them import
    this one for :class:`Config`, never the other way round at import time)."""
    if "game" in _SECTIONS:
        return
    from crowdsteer.executors import ExecutorConfig
    from crowdsteer.games import games
    from crowdsteer.learners import learners
    from crowdsteer.modifiers import modifiers
    from crowdsteer.objectives import ObjectiveConfig
    from crowdsteer.optimisers import OptimiserConfig

    section("game", games, "crowd")
    section("learner", learners, "exact")
    section("modifier", modifiers, "power_series")
    plain_section("objective", ObjectiveConfig)
    plain_section("optimiser", OptimiserConfig)
    plain_section("executor", ExecutorConfig)
    plain_section("finite_n", FiniteNConfig)


MAX_YAML_NODES = 100_000
"""Most values (scalars, lists, mappings) a config may hold once its aliases are expanded:
a "billion laughs" document of 500 bytes expands to 10**9 and is refused before it is."""


class _TooLarge(Exception):
    """A YAML document that expands past :data:`MAX_YAML_NODES` values."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document expanding past :data:`MAX_YAML_NODES`
    values and a mapping that repeats a key (the last one would win silently)."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: yaml.Node) -> int:  # expanded size; an aliased node is counted once
            if id(n) not in sizes:        # per use, and measured once (memoised)
                sizes[id(n)] = 1
                kids = (n.value if isinstance(n, yaml.SequenceNode) else
                        [x for kv in n.value for x in kv] if isinstance(n, yaml.MappingNode)
                        else [])
                sizes[id(n)] = min(1 + sum(map(size, kids)), 10 * MAX_YAML_NODES)
            return sizes[id(n)]

        if node is not None and size(node) > MAX_YAML_NODES:
            raise _TooLarge(f"the document expands (through its &anchors and *aliases) "
                                 f"to more than {MAX_YAML_NODES:,} values; a config is far "
                                 "smaller: write the values out")
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key, _ in node.value:
            if key.tag == "tag:yaml.org,2002:merge" or not isinstance(key, yaml.ScalarNode):
                continue
            k = self.construct_object(key)
            if k in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {str(k)[:40]!r} appears twice in one mapping (allowed: "
                    "each key once)", key.start_mark)
            seen.add(k)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str = "config") -> dict[str, Any]:
    """Parse YAML text into a mapping; syntax errors name the line. Documents that expand
    past :data:`MAX_YAML_NODES` values and repeated keys are refused."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except RecursionError:
        raise ConfigError(source, "malformed YAML: nested too deeply") from None
    except _TooLarge as exc:
        raise ConfigError(source, str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, f"malformed YAML at {where}{problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, f"the top level must be a mapping of sections, got "
                          f"{type(data).__name__}")
    return data


def load_config(source: str | Path | dict[str, Any], base_dir: Path | None = None,
                required: tuple[str, ...] = ("game",)) -> Config:
    """Load and validate a config from a YAML path or a dict.

    Parameters
    ----------
    source
        Path to a YAML file, or an already parsed mapping.
    base_dir
        Folder for relative paths; defaults to the YAML file's folder (or the cwd).
    required
        Sections that must be present.
    """
    _ensure_sections()
    if isinstance(source, dict):
        data = dict(source)
        base = base_dir or Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError("config", f"file not found: {path}")
        data = parse_yaml(path.read_text(), str(path))
        base = base_dir or path.parent.resolve()
    allowed = ["seed", *_SECTIONS, *_PLAIN]
    for key in data:
        if key not in allowed:
            raise ConfigError(str(key), "unknown section: " + unknown_name_message(key, allowed))
    for key in required:
        if key not in data:
            raise ConfigError(key, "this section is required")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", f"must be a whole number >= 0, got {shown(seed)}")
    sections: dict[str, BaseModel] = {}
    for key, spec in _SECTIONS.items():
        if key not in data and spec.default is None:
            continue
        sections[key] = validate_section(key, data.get(key))
    for key, model in _PLAIN.items():
        if key in data:
            sections[key] = validate(model, data[key], key)
    return Config(seed, sections, base)


def validate_section(key: str, raw: Any) -> BaseModel:
    """Validate one named section (``raw`` may be ``None`` for defaults)."""
    _ensure_sections()
    spec = _SECTIONS[key]
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"expected a mapping with a 'name', got {type(raw).__name__}")
    name = raw.get("name", spec.default)
    if name is None:
        raise ConfigError(f"{key}.name", f"missing; allowed: {', '.join(spec.registry.names())}")
    builder = spec.registry.get(str(name), f"{key}.name")
    return validate(builder.config, {**raw, "name": name}, key)


def build(config: Config, key: str, **kwargs: Any) -> Any:
    """Build the implementation a section names from its validated model."""
    _ensure_sections()
    model = config[key]
    if model is None:
        raise ConfigError(key, "this section is required")
    return _SECTIONS[key].registry.get(model.name, f"{key}.name")(model, **kwargs)


def build_game(config: Config) -> Any:
    return build(config, "game", base_dir=config.base_dir)
