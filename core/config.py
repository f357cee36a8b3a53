"""One base for every settings dataclass that is saved as JSON beside what it made.

Contract (`Config`, a mixin for `@dataclass` classes):
- `to_json()` is a plain JSON-serialisable dict of the fields; `from_json(to_json())` is equal.
- `from_json(data)` is tolerant: keys it does not know (written by a newer convsim, or a field
  since removed) are ignored and listed in `ignored_keys` of the result, so an old convsim still
  opens a newer dataset or run. Missing keys take their defaults.
- `with_overrides(**changes)` is strict: a key that is not a field raises `UnknownSetting`
  (a ValueError) naming it and listing the valid ones, since a user's typo must not be dropped.
  The result is a new config, validated again by the class's `__post_init__` if it has one.
- `save(path)` writes atomically (`convsim.core.files.write_json`); `load(path)` reads with
  `from_json` and names the file in any error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+; convsim runs on 3.10

from convsim.core.files import write_json

__all__ = ["Config", "UnknownSetting"]


class UnknownSetting(ValueError):
    """A setting name that the config does not have."""

    def __init__(self, config: str, keys: Iterable[str], valid: Iterable[str]) -> None:
        self.keys = sorted(keys)
        self.valid = sorted(valid)
        super().__init__(
            f"unknown {config} setting{'s' if len(self.keys) > 1 else ''}: "
            f"{', '.join(self.keys)} (valid: {', '.join(self.valid)})"
        )


class Config:
    """Mixin for dataclass configs: JSON in and out, strict overrides, files beside artefacts."""

    ignored_keys: ClassVar[tuple[str, ...]] = ()
    """Keys `from_json` ignored (set on the instance it returned); empty otherwise."""

    setting_kind: ClassVar[str] = "config"
    """How errors call this config ("training", "dataset", ...)."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def check_keys(cls, keys: Iterable[str]) -> None:
        """Raise `UnknownSetting` for any key that is not a field."""
        known = cls.field_names()
        unknown = set(keys) - set(known)
        if unknown:
            raise UnknownSetting(cls.setting_kind, unknown, known)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.setting_kind} settings must be a JSON object, not {data!r}")
        known = set(cls.field_names())
        required = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"{cls.setting_kind} settings lack {', '.join(missing)}")
        config = cls(**{k: v for k, v in data.items() if k in known})
        ignored = tuple(sorted(set(data) - known))
        if ignored:
            # Not a dataclass field, so it takes no part in equality or to_json; frozen
            # dataclasses refuse plain assignment.
            object.__setattr__(config, "ignored_keys", ignored)
        return config

    def with_overrides(self, **changes: Any) -> Self:
        self.check_keys(changes)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def save(self, path: Path | str) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path | str) -> Self:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls.from_json(data)
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: not a valid {cls.setting_kind} config: {exc}") from exc
