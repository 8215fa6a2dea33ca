"""The crawler's config file: several volumes, each with patterns, schedule and endpoint.

Mastro's crawler keys are accepted: ``root``, ``filter-filename`` (a regular expression on the
base name), ``schedule``, ``start-now`` and ``catalogue-endpoint``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in '15m', '1h30m', '90s', '@every 15m' or a bare number of seconds."""
    value = text.strip().removeprefix("@every").strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise ConfigError(
                f"schedule {text!r} is not a duration; write it like 30s, 15m, 1h or 1h30m"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"schedule {text!r} must be longer than zero")
    return seconds


class VolumeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    root: str = Field(validation_alias=AliasChoices("root", "url", "volume"))
    patterns: list[str] | None = None
    filter_filename: str | None = Field(
        None, validation_alias=AliasChoices("filter_filename", "filter-filename")
    )
    schedule: str | None = None
    start_now: bool = Field(True, validation_alias=AliasChoices("start_now", "start-now"))
    catalogue_endpoint: str | None = Field(
        None, validation_alias=AliasChoices("catalogue_endpoint", "catalogue-endpoint")
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("filter_filename")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(
                    f"filter-filename is not a valid regular expression: {exc}"
                ) from exc
        return value

    def name_patterns(self, default: list[str]) -> list[str]:
        patterns = list(self.patterns or [])
        if self.filter_filename:
            patterns.append("re:" + self.filter_filename)
        return patterns or default

    @property
    def interval(self) -> float | None:
        return parse_duration(self.schedule) if self.schedule else None


class CrawlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volumes: list[VolumeConfig] = Field(min_length=1)


def load_config(path: Path) -> CrawlConfig:
    import yaml  # only --config reads YAML here; a plain crawl's start-up skips it

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        # A ValueError, not an OSError: it ended the command in a traceback.
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if isinstance(raw, dict) and "volumes" not in raw and "root" in raw:
        raw = {"volumes": [raw]}  # a Mastro crawler config describes one volume
    try:
        config = CrawlConfig.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ConfigError(f"{path}: {details}") from exc
    base = path.parent
    for volume in config.volumes:
        # Relative roots are relative to the working directory if they exist there,
        # else to the config file, so both `cairn crawl --config x/crawl.yaml` habits work.
        relative = "://" not in volume.root and not Path(volume.root).is_absolute()
        if relative and not Path(volume.root).exists() and (base / volume.root).exists():
            volume.root = str(base / volume.root)
    return config
