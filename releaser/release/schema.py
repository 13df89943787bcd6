"""release.yaml against its JSON Schema (releaser/schemas/release.schema.json): every problem at
once, each said in words with its file, line, JSON path and a fix where one is obvious."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError

from ..errors import Problem
from ..yamlsource import PathT, Source


@cache
def release_schema() -> dict[str, Any]:
    text = resources.files("releaser").joinpath("schemas/release.schema.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def mac_algorithms() -> tuple[str, ...]:
    """The TCP-AO MAC algorithms release.yaml accepts (the schema's enum: the one list of them)."""
    return tuple(release_schema()["$defs"]["tcpao"]["properties"]["macAlgorithm"]["enum"])


def _schema_at(path: tuple[Any, ...]) -> dict[str, Any]:
    """The subschema a schema path points at, following local $refs."""
    schema = release_schema()
    node: Any = schema
    for part in path:
        node = node[part]
        while isinstance(node, dict) and "$ref" in node and len(path) > 0:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                break
            target: Any = schema
            for p in ref[2:].split("/"):
                target = target[p]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node if isinstance(node, dict) else {}


def type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }.get(type(value), type(value).__name__)


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    r"""A schema `pattern` as JSON Schema means it (an ECMA-262 regular expression): there `$` is the
    end of the text, where Python's `$` also matches before a final newline, so that "web\n" passed
    ^[a-z]+$ and a name, a version or an image reference could end in a newline. Each `$` outside
    a character class becomes `\Z`; nothing else in these patterns reads differently."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[SchemaError]:
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield SchemaError(f"{instance!r} does not match {pattern!r}")  # jsonschema's own words


# JSON Schema counts 8080.0 as an integer; YAML users mean a port, Compose refuses the float and
# the two renderers would print it differently: integers are ints here (booleans are not either).
_Validator = validators.extend(  # type: ignore[no-untyped-call]  # jsonschema does not annotate extend
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def schema_problems(src: Source) -> list[Problem]:
    validator = _Validator(release_schema())
    problems: list[Problem] = []
    for err in sorted(
        validator.iter_errors(src.data), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    ):
        problems.extend(p for p in _describe(src, err) if p not in problems)  # two keywords, one fault
    return problems


def yaml_word(src: Source, path: PathT, word: object) -> Problem:
    """A name YAML 1.1 reads as a boolean or null (the schema's `not: {enum: [...]}` of names)."""
    return src.problem(
        path,
        f"{word!r} cannot be a name: YAML 1.1 parsers (Helm's, Kubernetes') read it as "
        f"{'null' if word == 'null' else 'a boolean'}",
        "choose another name",
    )


def _describe(src: Source, err: SchemaError) -> list[Problem]:  # kept whole: one branch per schema keyword
    path: PathT = tuple(err.absolute_path)
    v = err.validator
    parent = err.schema if isinstance(err.schema, dict) else {}
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(parent.get("properties", {}))
        out = []
        for key in sorted(set(err.instance) - set(allowed)):
            guess = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean {guess[0]!r}?" if guess else f"allowed keys here: {', '.join(allowed)}"
            out.append(src.problem((*path, key), f"unknown key {key!r}", fix))
        if not allowed:  # a map of named things whose values failed; let the item errors speak
            return out or [src.problem(path, err.message)]
        return out
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        desc = _schema_at(tuple(err.schema_path)[:-1])  # the object schema holding "required"
        prop = desc.get("properties", {}).get(missing, {}) if isinstance(desc, dict) else {}
        hint = prop.get("description") if isinstance(prop, dict) else None
        return [
            src.problem(
                path, f"missing required key {missing!r}", f"add {missing}: ({hint})" if hint else None
            )
        ]
    spec: Any = err.validator_value  # the keyword's value in the schema (typed "Unset" by the stubs)
    if v in ("const", "enum"):
        allowed = [spec] if v == "const" else spec
        choices = " or ".join(json.dumps(a) for a in allowed)
        names = [a for a in allowed if isinstance(a, str)]
        guess = difflib.get_close_matches(err.instance, names, n=1) if isinstance(err.instance, str) else []
        return [
            src.problem(
                path,
                f"{err.instance!r} is not allowed here",
                f"did you mean {json.dumps(guess[0])}? (allowed: {choices})" if guess else f"use {choices}",
            )
        ]
    if v == "type":
        return [
            src.problem(
                path,
                f"expected {_article(err.validator_value)}, got {type_name(err.instance)}"
                f" ({json.dumps(err.instance, default=str)[:60]})",
                "quote the value"
                if err.validator_value == "string"
                else "write the number without quotes"
                if err.validator_value == "integer" and isinstance(err.instance, str)
                else f"write {int(err.instance)}, a whole number without a decimal point"
                if err.validator_value == "integer"
                and isinstance(err.instance, float)
                and err.instance.is_integer()
                else None,
            )
        ]
    if v == "pattern":
        return [_pattern_problem(src, path, err.instance, parent.get("description", ""))]
    if v in ("minimum", "maximum", "minLength", "maxLength", "minItems", "minProperties", "maxProperties"):
        return [src.problem(path, err.message)]
    if v == "oneOf" and all(set(s) == {"required"} for s in spec):
        keys = [s["required"][0] for s in spec]
        present = [k for k in keys if isinstance(err.instance, dict) and k in err.instance]
        what = f"has {', '.join(present)}" if present else "has none of them"
        return [
            src.problem(
                path,
                f"needs exactly one of {', '.join(keys)}; {what}",
                f"keep exactly one of: {', '.join(keys)}",
            )
        ]
    if v == "oneOf":
        return [
            src.problem(
                path,
                f"{json.dumps(err.instance, default=str)[:60]} is not valid here",
                parent.get("description"),
            )
        ]
    if v == "not" and "required" in spec:
        keys = spec["required"]
        return [
            src.problem(
                path, f"{' and '.join(keys)} cannot be used together", f"keep only one of {', '.join(keys)}"
            )
        ]
    if v == "not" and "enum" in spec:
        return [yaml_word(src, path, err.instance)]
    if v == "propertyNames":
        words = [sub.instance for sub in err.context or [] if sub.validator == "not"]
        return [yaml_word(src, path, words[0]) if words else src.problem(path, err.message)]
    if v in ("if", "then", "allOf"):
        return []  # their sub-errors carry the meaning
    return [src.problem(path, err.message)]


def _article(t: Any) -> str:
    names = t if isinstance(t, list) else [t]
    words = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "boolean": "true or false",
        "number": "a number",
    }
    return " or ".join(words.get(str(n), str(n)) for n in names)


def _pattern_problem(src: Source, path: PathT, value: Any, description: str) -> Problem:
    """A value its pattern refuses: a final line break said as such (a `|` block keeps one)."""
    if isinstance(value, str) and value.rstrip("\r\n") != value:
        return src.problem(
            path,
            f"{value!r} ends in a line break",
            "remove it (a `|` or `>` block keeps its last line break: write `|-`, or the value on the key's line)",
        )
    return src.problem(
        path, f"{value!r} is not valid here", f"expected: {description}" if description else None
    )
