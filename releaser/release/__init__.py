"""release.yaml -> Release, in three stages, each a module: the JSON Schema (`schema`: every problem
at once), the model (`build`), the checks the schema cannot make (`semantics`). Every problem carries
file, line and JSON path, and a fix where one is obvious. Nothing here raises on bad input except
ValidationError.

| module | decides |
|---|---|
| schema.py | whether the document has the schema's shape; each schema error said in words |
| build.py | the model's values: defaults, config files, ports, probes, metrics |
| semantics.py | whether the release makes sense: references, limits, addresses, cycles (errors, warnings) |
"""

from __future__ import annotations

from pathlib import Path

from .. import model as m
from ..errors import Problem, ValidationError
from ..names import RELEASE_FILE
from ..yamlsource import load_source
from .build import API_VERSION, TCPAO_DEFAULT_KEY, build_model
from .schema import mac_algorithms, release_schema, schema_problems, type_name
from .semantics import semantic_problems


def load_release(directory: Path) -> tuple[m.Release, list[Problem]]:
    """Load and validate DIR/release.yaml. Raises ValidationError listing every problem.

    Returns the release and the warnings (which do not stop anything).
    """
    # DIR, or the file itself; a DIR that does not exist is reported as DIR/release.yaml
    path = (
        directory
        if directory.is_file() or directory.suffix in (".yaml", ".yml")
        else directory / RELEASE_FILE
    )
    src, problems = load_source(path)
    if src is None:
        raise ValidationError(problems)
    if not isinstance(src.data, dict):
        raise ValidationError(
            [
                *problems,
                src.problem(
                    (),
                    f"expected a mapping at the top, got {type_name(src.data)}",
                    "start from `releaser init DIR`",
                ),
            ]
        )
    problems += schema_problems(src)
    if any(p.severity == "error" for p in problems):
        raise ValidationError(problems)
    release, build_problems = build_model(src)
    problems += build_problems
    problems += semantic_problems(src, release)
    if any(p.severity == "error" for p in problems):
        raise ValidationError(problems)
    problems.sort(key=lambda p: (p.line or 0, p.path))
    return release, problems


__all__ = ["API_VERSION", "TCPAO_DEFAULT_KEY", "load_release", "mac_algorithms", "release_schema"]
