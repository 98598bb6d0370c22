"""One experiment definition file, in ep-stats' REST request fields, validated strictly (pydantic v2)."""

import datetime
import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aggassets.catalog import format_errors, read_json_file, repeated_keys
from aggassets.errors import AggassetsError
from aggassets.experiments.expressions import (
    Expr,
    ExpressionError,
    GoalRef,
    goal_refs,
    parse_expression,
)

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Probability = Annotated[float, Field(gt=0, lt=1)]
_GOAL_NAME = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+$")]
_GOAL_RE = re.compile(r"^[A-Za-z0-9_]+$")


def _date_text(value: object) -> object:
    """A date is YYYY-MM-DD text (or a date, from Python): no timestamp, no date-time, no other form."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value, re.ASCII):
        return value
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    raise PydanticCustomError("date_text", "expected a date as YYYY-MM-DD text, got {value}", {"value": repr(value)})


# lax only after _date_text: pydantic's strict mode refuses date text from a parsed JSON object
IsoDate = Annotated[datetime.date, BeforeValidator(_date_text), Field(strict=False)]


def _check_expression(text: str, what: str) -> str:
    """Parse `text`; refuse it with the position and expected token, or when it has no goal."""
    try:
        expr = parse_expression(text)
    except ExpressionError as exc:
        raise PydanticCustomError(
            "expression", "cannot parse {what} {detail}", {"what": what, "detail": str(exc)}
        ) from exc
    if not goal_refs(expr):
        raise PydanticCustomError("expression", "{what} has no goal: {text}", {"what": what, "text": repr(text)})
    return text


class MetricDefinition(BaseModel):
    """A metric nominator / denominator; `simple` (reference only) takes bare goal names."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: int
    name: NonEmpty
    simple: bool = Field(False, description="ep-stats' SimpleMetric: value(<unit_type>.global.<goal>)")
    nominator: NonEmpty
    denominator: NonEmpty
    minimum_effect: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @field_validator("nominator", "denominator")
    @classmethod
    def _parses(cls, text: str, info: ValidationInfo) -> str:
        """An expression, or with `simple` a bare goal name."""
        if info.data.get("simple"):
            if not _GOAL_RE.fullmatch(text):
                raise PydanticCustomError("goal", "a simple metric takes a goal name, got {text}", {"text": repr(text)})
            return text
        return _check_expression(text, str(info.field_name))

    def expressions(self, unit_type: str) -> tuple[Expr, Expr]:
        """Parsed (nominator, denominator); simple goal names expanded as ep-stats does."""
        if self.simple:
            return (
                parse_expression(f"value({unit_type}.global.{self.nominator})"),
                parse_expression(f"value({unit_type}.global.{self.denominator})"),
            )
        return parse_expression(self.nominator), parse_expression(self.denominator)


class CheckDefinition(BaseModel):
    """An SRM check (exposures per variant) or a SumRatio check (nominator share of the total)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: int
    name: NonEmpty
    type: Literal["SRM", "SumRatio"] = "SRM"
    nominator: NonEmpty | None = None
    denominator: NonEmpty
    confidence_level: Probability = 0.999
    max_sum_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01

    @field_validator("nominator", "denominator")
    @classmethod
    def _parses(cls, text: str | None, info: ValidationInfo) -> str | None:
        """A parsable expression with at least one goal."""
        return None if text is None else _check_expression(text, str(info.field_name))

    @model_validator(mode="after")
    def _nominator_by_type(self) -> "CheckDefinition":
        """SumRatio needs a nominator; SRM has none."""
        if self.type == "SumRatio" and self.nominator is None:
            raise ValueError("a SumRatio check needs a nominator")
        if self.type == "SRM" and self.nominator is not None:
            raise ValueError("an SRM check takes no nominator (only the denominator: exposures)")
        return self


class FilterDefinition(BaseModel):
    """ep-stats' filter: exposure / goal scope need dimension and values, trigger needs a goal."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    scope: Literal["exposure", "goal", "trigger"]
    dimension: Name | None = None
    value: list[str | int | float] | None = None
    goal: _GOAL_NAME | None = None

    @model_validator(mode="after")
    def _by_scope(self) -> "FilterDefinition":
        """The fields each scope requires, as ep-stats."""
        if self.scope == "trigger":
            if not self.goal:
                raise ValueError("goal is required for scope 'trigger'")
            if (self.dimension is None) != (not self.value):
                raise ValueError("a trigger filter takes both dimension and value, or neither")
        else:
            if not (self.dimension and self.value):
                raise ValueError(f"dimension and value are required for scope '{self.scope}'")
            if self.goal is not None:
                raise ValueError("goal is only used with scope 'trigger'")
        return self

    def values_text(self) -> frozenset[str]:
        """The accepted values as text (1 and 1.0 both read as '1')."""
        return frozenset(_as_text(v) for v in self.value or [])


def _as_text(value: str | int | float) -> str:
    """A filter value as text; integral numbers without a decimal point."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ExperimentDefinition(BaseModel):
    """One experiment: ep-stats' REST request fields plus traffic_weights for the SRM check."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: NonEmpty
    control_variant: NonEmpty
    unit_type: Name
    variants: list[NonEmpty] | None = None
    date_from: IsoDate | None = None
    date_to: IsoDate | None = None
    date_for: IsoDate | None = Field(None, description="reference only: ep-stats' evaluation date")
    metrics: list[MetricDefinition]
    checks: list[CheckDefinition] = []
    filters: list[FilterDefinition] = []
    null_hypothesis_rate: Probability | None = None
    confidence_level: Probability = 0.95
    traffic_weights: dict[NonEmpty, float] | None = None
    by_unit: bool = Field(False, description="reference only: ep-stats evaluated it by unit")

    @field_validator("filters", mode="before")
    @classmethod
    def _null_filters(cls, value: object) -> object:
        """ep-stats accepts `"filters": null`."""
        return [] if value is None else value

    # Rules between fields are field checks (on the later field, reading the earlier ones from info.data), so
    # that each is listed at its field with every other error; an invalid earlier field skips the rule.
    @field_validator("variants")
    @classmethod
    def _variants_hold_control(cls, variants: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Variants are unique and include control_variant."""
        problems = []
        if variants is not None and len(set(variants)) != len(variants):
            problems.append("variants must be unique")
        control = info.data.get("control_variant")
        if variants is not None and control is not None and control not in variants:
            problems.append(f"control_variant {control!r} is not in variants")
        return _refuse(problems, variants)

    @field_validator("date_to")
    @classmethod
    def _date_to_after_from(cls, date_to: datetime.date | None, info: ValidationInfo) -> datetime.date | None:
        """date_to >= date_from."""
        date_from = info.data.get("date_from")
        if date_from and date_to and date_to < date_from:
            raise ValueError("date_to must be on or after date_from")
        return date_to

    @field_validator("date_for")
    @classmethod
    def _date_for_within(cls, date_for: datetime.date | None, info: ValidationInfo) -> datetime.date | None:
        """date_for needs date_from and date_to and lies between them (as ep-stats)."""
        if date_for is None or not {"date_from", "date_to"} <= set(info.data):  # an invalid date: listed already
            return date_for
        date_from, date_to = info.data["date_from"], info.data["date_to"]
        if date_from is None or date_to is None:
            raise ValueError("date_for requires date_from and date_to")
        if not date_from <= date_for <= date_to:
            raise ValueError("date_for must lie between date_from and date_to")
        return date_for

    @field_validator("metrics", "checks")
    @classmethod
    def _unique_ids(cls, items: list, info: ValidationInfo) -> list:
        """Metric ids, and check ids, are unique."""
        ids = [item.id for item in items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        return _refuse([f"duplicate {info.field_name[:-1]} ids: {dupes}"] if dupes else [], items)

    @field_validator("traffic_weights")
    @classmethod
    def _weights_fit_variants(cls, weights: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        """Positive finite weights, naming the control and exactly the variants when those are listed."""
        if weights is None:
            return None
        problems = []
        bad = [k for k, w in weights.items() if not (math.isfinite(w) and w > 0)]
        if bad:
            problems.append(f"traffic_weights must be positive numbers: {bad}")
        control, variants = info.data.get("control_variant"), info.data.get("variants")
        if control is not None and control not in weights:
            problems.append("traffic_weights must include the control variant")
        if variants is not None and set(variants) != set(weights):
            problems.append("traffic_weights must name exactly the variants")
        return _refuse(problems, weights)

    def exposure_ref(self) -> GoalRef:
        """`count(<unit_type>.global.exposure)`: the exposures per variant."""
        return GoalRef("count", self.unit_type, "global", "exposure")

    def check_expressions(self, check: CheckDefinition) -> tuple[Expr | None, Expr]:
        """Parsed (nominator or None, denominator) of a check."""
        nominator = parse_expression(check.nominator) if check.nominator else None
        return nominator, parse_expression(check.denominator)


def _refuse(problems: list[str], value: object) -> object:
    """`value`, or a ValueError naming every problem found with it."""
    if problems:
        raise ValueError("; ".join(problems))
    return value


def parse_experiment(raw: object, source: str = "<experiment>") -> ExperimentDefinition:
    """Validate an already-decoded experiment; AggassetsError listing every error and its location (keys
    named twice in a file read by read_json_file among them)."""
    repeated = repeated_keys(raw)
    try:
        experiment = ExperimentDefinition.model_validate(raw)
    except ValidationError as exc:
        raise AggassetsError(format_errors(Path(source), exc, "experiment", more=repeated)) from exc
    if repeated:
        raise AggassetsError(format_errors(Path(source), None, "experiment", more=repeated))
    return experiment


def load_experiment(path: Path | str) -> ExperimentDefinition:
    """Read and validate one experiment JSON file; AggassetsError with every error on a bad file."""
    return parse_experiment(read_json_file(path, "experiment"), str(path))


def load_experiments(folder: Path | str) -> dict[str, ExperimentDefinition]:
    """Every `<id>.json` of the folder (none when it does not exist), keyed by id; all errors at once."""
    found: dict[str, ExperimentDefinition] = {}
    errors: list[str] = []
    folder = Path(folder)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            experiment = load_experiment(path)
        except AggassetsError as exc:
            errors.append(str(exc))
            continue
        if experiment.id != path.stem:
            errors.append(f"{path}: id {experiment.id!r} must equal the file name {path.stem!r}")
        else:
            found[experiment.id] = experiment
    if errors:
        raise AggassetsError("invalid experiment catalog:\n" + "\n".join(errors))
    return found
