"""Study specs (YAML) parsed and validated into pydantic models; every error names file and key path."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import paths

BackendKind = Literal["embedded", "ollama", "openai", "llamacpp"]


class StudyError(ValueError):
    """A study spec that cannot be used; the message says where and what to change."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSpec(_Spec):
    """The embedded llama-server (router mode) that serves studies with `backend: embedded`."""

    models_max: int = Field(1, ge=1, description="models kept loaded at once; loading another evicts one")
    sleep_idle_seconds: float | None = Field(
        None, gt=0, description="unload a model after this many idle seconds (Ollama's keep_alive)"
    )
    ctx_size: int = Field(2048, ge=128, description="context size of every model")
    threads: int | None = Field(None, ge=1, description="CPU threads; the engine decides when unset")


class TimeoutsSpec(_Spec):
    """Per-phase limits in seconds; the first byte may wait for a slow model load."""

    connect_s: float = Field(10.0, gt=0)
    first_byte_s: float = Field(300.0, gt=0)
    between_chunks_s: float = Field(60.0, gt=0)
    total_s: float = Field(900.0, gt=0)


class ScenarioSpec(_Spec):
    """One configuration to measure: a server, a model and its settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    backend: BackendKind | None = None  # the study's `backend` when unset
    base_url: str | None = Field(None, pattern=r"^https?://")
    model: str
    endpoint: Literal["generate", "chat"] = "generate"  # Ollama only
    keep_alive: float | str | None = None  # Ollama only
    options: dict[str, Any] = Field(default_factory=dict)  # Ollama `options`


class WorkloadSpec(_Spec):
    """What is sent, how often, in which order."""

    requests: int = Field(20, ge=1, description="measured requests per scenario")
    warmup: int = Field(0, ge=0, description="requests per scenario sent first, kept but not counted")
    max_tokens: int = Field(32, ge=1)
    prompts: Literal["builtin"] | list[str] = "builtin"
    unique_prefix: bool = Field(
        True, description="make every prompt unique so the prompt cache cannot flatter warm requests"
    )
    idle_gap_s: float = Field(0.0, ge=0, description="pause before each request")
    order: Literal["interleaved", "blocked"] = "interleaved"
    temperature: float | None = 0.0
    seed: int | None = 42


class StudySpec(_Spec):
    """A whole study: scenarios measured under one workload."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    backend: BackendKind = "embedded"
    base_url: str | None = Field(None, pattern=r"^https?://")
    engine: EngineSpec = EngineSpec()
    timeouts: TimeoutsSpec = TimeoutsSpec()
    workload: WorkloadSpec = WorkloadSpec()
    scenarios: list[ScenarioSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        names = [s.name for s in self.scenarios]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"scenario names must be unique; repeated: {', '.join(duplicates)}")
        for s in self.scenarios:
            kind = s.backend or self.backend
            if kind != "embedded" and not (s.base_url or self.base_url):
                raise ValueError(f"scenario {s.name!r} uses backend {kind!r} and needs a base_url")
        return self

    def backend_of(self, scenario: ScenarioSpec) -> BackendKind:
        return scenario.backend or self.backend

    def base_url_of(self, scenario: ScenarioSpec) -> str | None:
        return scenario.base_url or self.base_url

    @property
    def uses_engine(self) -> bool:
        return any(self.backend_of(s) == "embedded" for s in self.scenarios)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` (for "did you mean")."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(current.model_fields) if current else []


def _describe(error: dict[str, Any], source: str) -> str:
    loc = tuple(error["loc"])
    where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[") or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(StudySpec, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = "unknown key" + (f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}")
    elif "input" in error and error["type"] not in ("missing",):
        message += f" (got {error['input']!r})"
    return f"{source}: {where}: {message}"


def parse_study(data: Any, source: str = "<study>") -> StudySpec:
    """Validate a study already read from YAML; raise `StudyError` listing every problem."""
    if not isinstance(data, dict):
        raise StudyError(f"{source}: a study must be a YAML mapping, got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join("  " + _describe(e, source) for e in exc.errors())
        raise StudyError(f"invalid study ({len(exc.errors())} problem(s)):\n{problems}") from None


def resolve_study_path(name_or_path: str | Path) -> Path:
    """A study file by path, or by name under studies/ (`embedded-demo` → studies/embedded-demo.yaml)."""
    path = Path(name_or_path)
    for candidate in (path, paths.STUDIES_DIR / path, paths.STUDIES_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(p.stem for p in sorted(paths.STUDIES_DIR.glob("*.yaml")))
    raise StudyError(f"no study file {str(name_or_path)!r}; shipped studies: {shipped}")


def load_study(name_or_path: str | Path) -> tuple[StudySpec, dict[str, Any]]:
    """Read and validate a study file; returns the spec and the raw mapping as given."""
    path = resolve_study_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    return parse_study(raw, str(path)), raw


def with_base_url(study: StudySpec, base_url: str) -> StudySpec:
    """The study with `base_url` for every scenario that does not name its own (validated again)."""
    return parse_study({**study.model_dump(mode="json"), "base_url": base_url}, "--base-url")
