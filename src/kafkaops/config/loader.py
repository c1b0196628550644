"""The one place that reads a config file: parse, interpolate `${ENV}`, validate, explain errors."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kafkaops.config.model import Config

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MASK = "********"
M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A user error in a config file; its text names the file, the key and the bad value."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems) if len(problems) == 1 else "")

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{self.source}: {len(self.problems)} problems\n{lines}"


def read_document(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """Parse TOML or YAML (`fmt`, else by extension; TOML otherwise) into a plain dict."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    if fmt == "yaml" or (fmt is None and path.suffix.lower() in (".yaml", ".yml")):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"invalid YAML: {exc}"]) from None
        data = {} if data is None else data
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [f"invalid TOML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [f"top level must be a table, got {type(data).__name__}"])
    return data


def interpolate(data: Any, source: str, env: Mapping[str, str] | None = None) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in strings, so secrets can live outside the file."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):
            return _ENV.sub(lambda m: lookup(m, path), node)
        return node

    def lookup(m: re.Match[str], path: str) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set")
        return ""

    result = walk(data, "")
    if problems:
        raise ConfigError(source, problems)
    return result


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate `data` against `model`, turning pydantic's errors into ConfigError lines."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err, data) for err in exc.errors()]) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    data = interpolate(read_document(path), str(path), env)
    return validate(Config, data, str(path))


def _describe(err: Any, data: Any) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    key = _key_path(loc, data)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    if not loc:
        return msg
    if isinstance(err.get("input"), dict):
        return f"{key}: {msg}"
    shown = MASK if is_secret_key(str(loc[-1])) else repr(err.get("input"))
    return f"{key}: {msg} (got {shown})"


def _key_path(loc: list[Any], data: Any) -> str:
    """Render a location the way the file spells it: `kafka[1].batch-size`, `http.bind-address`."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        name = str(part)
        if isinstance(node, dict) and name not in node:
            alt = name.replace("_", "-")
            name = alt if alt in node else name
        out += f".{name}" if out else name
        node = node.get(name) if isinstance(node, dict) else None
    return out


_SECRET_WORDS = ("password", "secret", "token", "credential", "auth-header")


def is_secret_key(key: str) -> bool:
    """Keys whose values are never shown: the same rule for errors, logs and `config check`."""
    k = key.lower().replace("_", "-")
    return any(w in k for w in _SECRET_WORDS) and not k.endswith(("-url", "-margin", "-path"))


def masked(model: BaseModel) -> dict[str, Any]:
    """The effective config as plain data, every secret replaced by a mask.

    SecretStr fields already dump masked; free-form tables (headers, OAuth parameters) are
    masked by key name with the same rule errors use.
    """

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: walk(v, str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str) and node and (is_secret_key(key) or set(node) == {"*"}):
            return MASK
        return node

    return walk(model.model_dump(by_alias=True, mode="json"))
