"""The space file as pydantic models: its keys, their types, TrainConfig's bounds (its JSON Schema: json_schema.py).

Each TrainConfig field gets a param model holding only the kinds that fit its type, with every value
and bound checked against the field's declaration. Cross-field rules are in rules.py.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError

from search.metric import DEFAULT as DEFAULT_METRIC
from search.metric import SEARCH_METRICS
from search.runfolder.checkpoints import DEFAULT_KEEP, KEEP_CHECKPOINTS, KEEP_HELP
from simvp_core.config import FIELD_TYPES, Settings, whole, without_none

KINDS = ("grid", "choice", "uniform", "loguniform", "int")
VALUE_KINDS = ("grid", "choice")
RANGE_KINDS = ("uniform", "loguniform", "int")
ALGORITHMS = ("grid", "optuna", "random")
SCHEDULERS = ("none", "asha")
METRICS = SEARCH_METRICS  # validation metric -> direction, declared once in search.metric
PUBLISHED_VALUES = ("mse", "mae", "ssim", "psnr", "params_m")


class Section(BaseModel):
    """A mapping of the space file: unknown keys are refused and no value is converted.

    A key that may be left out defaults to None without accepting null: null is never a value here.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def value_type(name: str) -> Any:
    """One value of field `name` in a space: its type and bounds, never null (null means 'not applied')."""
    info = Settings.model_fields[name]
    annotation = without_none(info.annotation)
    extras = (*info.metadata, *((BeforeValidator(whole),) if FIELD_TYPES[name][0] is int else ()))
    return Annotated[annotation, *extras] if extras else annotation


def _param_model(name: str) -> type[Section]:
    """The kinds a searched field may use: grid/choice for all, ranges for numbers of its type."""
    value, base = value_type(name), FIELD_TYPES[name][0]

    def values(help: str) -> tuple:
        return list[value], Field(None, min_length=1, description=help)

    def bounds(help: str) -> tuple:
        return list[value], Field(None, min_length=2, max_length=2, description=help)

    kinds: dict[str, tuple] = {"grid": values("every value, in the grid's product; algorithm grid only"),
                               "choice": values("one of these values: sampled, or enumerated by a grid")}
    if base is float:
        kinds["uniform"] = bounds("[low, high]: a float, uniform")
        kinds["loguniform"] = bounds("[low, high], low > 0: a float, on a log scale")
    if base is int:
        kinds["int"] = bounds("[low, high]: an integer, both ends included")
    if base in (int, float):
        kinds["step"] = float, Field(None, gt=0, description="quantisation; divides both bounds")
    kinds["when"] = dict[str, Any], Field(
        None, description="applies only when these grid/choice params above have these values")
    return create_model(f"Param_{name}", __base__=Section, __doc__=Settings.model_fields[name].description,
                        **kinds)


def _by_field(title: str, doc: str, field_type: Any) -> type[Section]:
    """A mapping keyed by TrainConfig field names, each field's value of type field_type(name)."""
    fields = {n: (field_type(n), Field(None, description=f.description))
              for n, f in Settings.model_fields.items()}
    return create_model(title, __base__=Section, __doc__=doc, **fields)


Space = _by_field("Space", "The searched TrainConfig fields, in this order.", _param_model)
Values = _by_field("Values", "TrainConfig values by field name.", value_type)


def given_values(values: Section) -> dict[str, Any]:
    """The fields a Values mapping of the file gives, with their values (declaration order)."""
    return {n: getattr(values, n) for n in type(values).model_fields if n in values.model_fields_set}


class Search(Section):
    """How trials are chosen."""

    algorithm: Literal[ALGORITHMS] = Field(description="grid: every point; optuna: TPE; random: at random")
    num_samples: int = Field(None, ge=1, description="trials (optuna / random); not with grid")
    seed: int = Field(0, ge=0, description="sampler seed")
    points_to_evaluate: list[Values] = Field(
        [], description="tried first (optuna / random); the exact grid instead of the product (grid)")


class Scheduler(Section):
    """How trials are stopped."""

    type: Literal[SCHEDULERS] = Field(description="none: every trial runs all its epochs; asha: early stops")
    grace_period: int = Field(None, ge=1, description="first epoch ASHA may stop a trial at")
    reduction_factor: int = Field(None, ge=2, description="ASHA keeps 1 / reduction_factor per rung")
    max_epochs: int = Field(None, ge=1, description="equal to base.epochs, the OneCycle length")


class Resources(Section):
    """What each trial may use."""

    cpu: float = Field(1, gt=0, description="CPUs per trial")
    gpu: float = Field(0, ge=0, description="GPUs per trial: 0, a fraction up to 1, or a whole number")


class Budget(Section):
    """Upper bounds on what a configuration costs, known before it trains: one over them never trains."""

    params_m: float = Field(None, gt=0, description="parameters, millions: at most this many")
    gmacs: float = Field(None, gt=0, description="GMACs (multiply-accumulates) per input sequence: at most this many")


BUDGET_KEYS = tuple(Budget.model_fields)  # what a budget bounds (search.budget counts each)


class Published(Section):
    """The paper's numbers for one of its rows, shown beside the matching trial."""

    match: Values = Field(description="the paper's row, by TrainConfig values")
    source: str = Field(description="where the numbers come from, e.g. 'Table 3'")
    mse: float = None
    mae: float = None
    ssim: float = None
    psnr: float = None
    params_m: float = Field(None, description="parameters, millions")


class SpaceFile(Section):
    """One search: fixed settings, searched params, how trials are chosen and stopped, the paper's numbers."""

    experiment: str = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description=(
        "a name of letters, digits, '_', '.', '-': it names runs/<name> (default: the file's name)"))
    description: str = Field("", description="one line for the plan and the report")
    base: Settings = Field(default_factory=Settings, description="fixed TrainConfig values over its defaults")
    space: Space = Field(default_factory=Space, description="the searched TrainConfig fields, in order")
    search: Search = Field(description="how trials are chosen: algorithm, num_samples, seed, ...")
    scheduler: Scheduler = Field(default_factory=lambda: Scheduler(type="none"), description="none or asha")
    metric: Literal[tuple(METRICS)] = Field(DEFAULT_METRIC, description="the validation metric trials are ranked on")
    repeats: int = Field(1, ge=1, description="seeds per configuration (base.seed, base.seed + 1, ...)")
    resources: Resources = Field(default_factory=Resources, description="per trial")
    max_failures: int = Field(1, ge=0, description="retries of a trial that raised, from its checkpoint")
    blocks: list[str] = Field([], description="searched params: the report's one table per value")
    published: list[Published] = Field([], description="the paper's numbers, shown beside ours")
    sample_fallback: bool = Field(False, description="offline: run on the bundled sample (labelled so)")
    keep_checkpoints: Literal[tuple(KEEP_CHECKPOINTS)] = Field(DEFAULT_KEEP, description=KEEP_HELP)
    budget: Budget = Field(None, description="bounds on parameters and GMACs: configurations over them never train")
    warm_start: list[str] = Field(
        [], description="earlier searches (run folders, or names in the same storage) whose completed "
                        "trials seed the study (algorithm optuna)")

    @field_validator("metric", mode="before")
    @classmethod
    def _not_a_test_metric(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("test_"):
            raise PydanticCustomError("space", "{what}", {
                "what": f"{value} is a test-set metric: never select on the test set "
                        "(the reported test numbers would no longer be held out)",
                "expected": f"a validation metric: {', '.join(METRICS)}"})
        return value
