"""The measure catalog: loads and validates definitions/measures.json (the experiments in
definitions/experiments/ are read by experiments/definition.py), and the JSON reading both share."""

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aggassets.errors import AggassetsError

Period = Literal["day", "week", "month"]
GroupKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")]
MeasureName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,127}$")]
INT32_MAX = 2**31 - 1  # thresholds and waits are stored as INTEGER


class MeasureDefinition(BaseModel):
    """One DACC measure definition (camelCase as in DACC's definitions file). Types are strict: `true` is
    not a threshold of 1, nor `"50"` a number. DACC's database `id` is accepted and not used."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    id: int | None = None
    name: MeasureName
    org: str | None = None
    created_by: str | None = Field(None, alias="createdBy")
    group1_key: GroupKey | None = Field(None, alias="group1Key")
    group2_key: GroupKey | None = Field(None, alias="group2Key")
    group3_key: GroupKey | None = Field(None, alias="group3Key")
    description: str | None = None
    aggregation_period: Period = Field(alias="aggregationPeriod")
    execution_frequency: Period | None = Field(None, alias="executionFrequency")
    aggregation_threshold: int = Field(5, alias="aggregationThreshold", ge=1, le=INT32_MAX)
    access_app: bool = Field(False, alias="accessApp")
    access_public: bool = Field(False, alias="accessPublic")
    with_quartiles: bool = Field(False, alias="withQuartiles")
    max_days_to_update_quartile: int = Field(100, alias="maxDaysToUpdateQuartile", ge=0, le=INT32_MAX)

    @model_validator(mode="before")
    @classmethod
    def _period_from_frequency(cls, data: object) -> object:
        """DACC files may leave aggregationPeriod out (DACC's own definitions.json does): the measure is
        then aggregated at its executionFrequency."""
        if isinstance(data, dict) and not {"aggregationPeriod", "aggregation_period"} & set(data):
            frequency = data.get("executionFrequency", data.get("execution_frequency"))
            if frequency in ("day", "week", "month"):
                return {**data, "aggregationPeriod": frequency}
        return data

    @field_validator("group2_key", "group3_key")
    @classmethod
    def _groups_in_order(cls, key: str | None, info: ValidationInfo) -> str | None:
        """group2Key needs group1Key, group3Key needs group2Key (DACC groups are positional); keys differ.
        A field check, so that it is listed with the definition's other errors."""
        i = 2 if info.field_name == "group2_key" else 3
        earlier = [f"group{j}_key" for j in range(1, i)]
        if key is None or not all(name in info.data for name in earlier):  # an earlier key is invalid: listed
            return key
        if info.data[earlier[-1]] is None:
            raise ValueError(f"group{i}Key is set but group{i - 1}Key is not")
        if key in [info.data[name] for name in earlier]:
            raise ValueError(f"group keys must differ: {key!r} is also an earlier group key")
        return key

    def group_keys(self) -> tuple[str | None, str | None, str | None]:
        """The three group keys (None where the measure has no such group)."""
        return (self.group1_key, self.group2_key, self.group3_key)


class MeasuresFile(BaseModel):
    """DACC's definitions file: {"definitions": [...]}, names unique."""

    model_config = ConfigDict(extra="forbid", strict=True)

    definitions: list[MeasureDefinition]

    @field_validator("definitions")
    @classmethod
    def _unique_names(cls, definitions: list[MeasureDefinition]) -> list[MeasureDefinition]:
        """Definitions are matched by name, so a name may appear once (reported at `definitions`)."""
        seen: set[str] = set()
        dupes = sorted({d.name for d in definitions if d.name in seen or seen.add(d.name)})
        if dupes:
            raise ValueError(f"duplicate measure names: {', '.join(dupes)}")
        return definitions


@dataclass(frozen=True)
class MeasureCatalog:
    """The validated measure definitions, by name."""

    measures: tuple[MeasureDefinition, ...]

    def get(self, name: str) -> MeasureDefinition:
        """The definition named `name`, or a clear error."""
        for m in self.measures:
            if m.name == name:
                return m
        raise AggassetsError(f"unknown measure {name!r}")


def format_errors(
    path: Path | str, exc: ValidationError | None, kind: str = "definitions", more: Sequence[str] = ()
) -> str:
    """Every pydantic error (and `more` errors) as `file: location: message`, one per line."""
    lines = []
    for err in exc.errors() if exc is not None else []:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}")
    lines += [f"{path}: {m}" for m in more]
    return f"invalid {kind} file ({len(lines)} error(s)):\n" + "\n".join(lines)


class _RepeatedKeys(dict[str, object]):
    """A decoded JSON object that names some keys more than once (the last value kept, as json.loads does):
    `repeated` lists them, for repeated_keys to report."""

    repeated: tuple[str, ...] = ()


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """object_pairs_hook: the object; a _RepeatedKeys when a key comes twice (json.loads would keep the last
    value silently)."""
    found = _RepeatedKeys(pairs)
    if len(found) == len(pairs):
        return dict(found)
    counts = Counter(key for key, _ in pairs)
    found.repeated = tuple(key for key in counts if counts[key] > 1)
    return found


def repeated_keys(raw: object, location: tuple[object, ...] = ()) -> list[str]:
    """`location: duplicate key 'k' in one object` for every object of a file read by read_json_file that
    names a key twice (a file with one is refused, with its other errors)."""
    found = []
    if isinstance(raw, _RepeatedKeys):
        where = ".".join(str(p) for p in location) or "<root>"
        found += [f"{where}: duplicate key {key!r} in one object" for key in raw.repeated]
    children = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else []
    for key, value in children:
        found += repeated_keys(value, (*location, key))
    return found


def read_json_file(path: Path | str, kind: str) -> object:
    """A catalog file's JSON (see repeated_keys); AggassetsError when it cannot be read or is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise AggassetsError(f"cannot read {kind} file {path}: {reason}") from exc
    except json.JSONDecodeError as exc:
        raise AggassetsError(f"{path}: not JSON: {exc}") from exc
    except RecursionError as exc:  # arrays or objects nested thousands deep: no catalog file is
        raise AggassetsError(f"cannot read {kind} file {path}: its JSON is nested too deeply") from exc


def load_measures_file(path: Path) -> MeasureCatalog:
    """Validate a DACC definitions file as a whole; refuse it listing every error."""
    raw = read_json_file(path, "definitions")
    repeated = repeated_keys(raw)
    try:
        parsed = MeasuresFile.model_validate(raw)
    except ValidationError as exc:
        reported = any("duplicate measure names" in str(e["msg"]) for e in exc.errors())
        more = [] if reported else _duplicate_names(raw)
        raise AggassetsError(format_errors(Path(path), exc, more=[*repeated, *more])) from exc
    if repeated:
        raise AggassetsError(format_errors(Path(path), None, more=repeated))
    return MeasureCatalog(tuple(parsed.definitions))


def _duplicate_names(raw: object) -> list[str]:
    """The duplicate-name error of a file that has other errors too (the model reports it only when the
    definitions are valid)."""
    items = raw.get("definitions") if isinstance(raw, dict) else None
    names = (
        [d["name"] for d in items if isinstance(d, dict) and isinstance(d.get("name"), str)]
        if isinstance(items, list)
        else []
    )
    dupes = sorted({n for n in names if names.count(n) > 1})
    return [f"definitions: duplicate measure names: {', '.join(dupes)}"] if dupes else []


def load_measures(definitions_dir: Path) -> MeasureCatalog:
    """The catalog's measures: `<definitions_dir>/measures.json`."""
    return load_measures_file(Path(definitions_dir) / "measures.json")
