"""Settings own every default once; the command lines derive their flags from them, share
--version and -v, and end on a PgkbError only."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import pgkb
from ingest import cli as ingest_cli
from pgkb.errors import ConfigurationError, PgkbError, QueryError
from pgkb.settings import (
    COMMON_FLAGS,
    FINETUNE_FLAGS,
    REMOTE_FLAGS,
    RERANK_FLAGS,
    SERVE_FLAGS,
    STORE_FLAGS,
    Settings,
)
from retrieval import cli as search_cli
from serve import cli as pgkb_cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pgkb", "ingest", "embedding", "store", "retrieval", "serve")
FIELDS = {setting.name: setting for setting in dataclasses.fields(Settings)}
WITH_FLAGS = [name for name, setting in FIELDS.items() if setting.metadata["flag"]]
# Each command line's settings flags: ingest takes every setting that has a flag but the
# server's and the searches' own.
COMMANDS = {"ingest": (ingest_cli.main, [], [name for name in WITH_FLAGS
                                             if name not in (*SERVE_FLAGS, *REMOTE_FLAGS, *RERANK_FLAGS,
                                                             *FINETUNE_FLAGS)]),
            "search": (search_cli.main, [], [*COMMON_FLAGS, *RERANK_FLAGS, *REMOTE_FLAGS]),
            "pgkb eval": (pgkb_cli.main, ["eval"], [*COMMON_FLAGS, *RERANK_FLAGS]),
            "pgkb serve": (pgkb_cli.main, ["serve"], [*STORE_FLAGS, *SERVE_FLAGS, "device"]),
            "pgkb finetune": (pgkb_cli.main, ["finetune"], [*STORE_FLAGS, "collection", *FINETUNE_FLAGS, "device",
                                                          "batch_tokens"])}


def help_text(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    main, subcommand, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as stopped:
        main([*subcommand, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


def flag_help(text: str, flag: str) -> str:
    """The help of `flag` in --help: its line, and the next one where argparse puts the help
    of a long flag."""
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("-") and flag in line.split("  ")[0].replace(",", "").split())
    follows = lines[start + 1] if start + 1 < len(lines) and not lines[start + 1].startswith("-") else ""
    return f"{lines[start]} {follows}"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_shows_its_settings_flags_with_their_variable_and_default(command, capsys, monkeypatch):
    text = help_text(command, capsys, monkeypatch)
    for name in COMMANDS[command][2]:
        setting = FIELDS[name]
        env, value = setting.metadata["env"], setting.default
        shown = flag_help(text, setting.metadata["flag"])
        if isinstance(value, bool):
            assert f"({env}={int(not value)}; default: {'on' if value else 'off'})" in shown, shown
        elif value is None:
            assert f"({env})" in shown, shown
        else:
            assert f"({env}; default: {value})" in shown, shown
    flags = {FIELDS[name].metadata["flag"] for name in WITH_FLAGS}
    shown = {flag for flag in flags if f" {flag}" in text}
    assert shown == {FIELDS[name].metadata["flag"] for name in COMMANDS[command][2]}


def test_a_flag_overrides_its_variable_and_an_absent_flag_leaves_it(monkeypatch):
    monkeypatch.setenv("PGKB_CHUNK_TOKENS", "300")
    monkeypatch.setenv("PGKB_PII", "0")
    parser = ingest_cli._parser()
    from_env = Settings.from_arguments(parser.parse_args(["folder"]))
    assert (from_env.chunk_tokens, from_env.pii, from_env.follow_links) == (300, False, False)
    flagged = Settings.from_arguments(parser.parse_args(["folder", "--chunk-tokens", "500", "--follow-links",
                                                         "--data-dir", "~/kb", "-c", "handbook"]))
    assert (flagged.chunk_tokens, flagged.follow_links, flagged.collection) == (500, True, "handbook")
    assert flagged.data_dir == Path.home() / "kb"


def stage_defaults(tree: ast.AST):
    """(name, constant) of each default a module gives: parameters' defaults, dataclass fields'
    and module constants' values, argparse's default=."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.posonlyargs + node.args.args
            yield from zip((a.arg for a in positional[len(positional) - len(node.args.defaults):]),
                           node.args.defaults)
            yield from ((a.arg, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d)
        elif isinstance(node, ast.keyword) and node.arg == "default":
            yield None, node.value
        elif isinstance(node, (ast.ClassDef, ast.Module)):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and statement.value and isinstance(statement.target, ast.Name):
                    yield statement.target.id, statement.value
                elif isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                    yield statement.targets[0].id, statement.value


def repeats(name: str | None, value, setting: dataclasses.Field) -> bool:
    """Whether a default named `name` is the setting's default written again. None (unset), 0,
    1 and "" are too common to tell; a name must end like the setting's (batch_tokens, seconds...)."""
    if isinstance(value, bool) or isinstance(setting.default, bool) or value in (None, 0, 1, ""):
        return False
    if type(value) is not type(setting.default) and not {type(value), type(setting.default)} <= {int, float}:
        return False
    words = setting.name.split("_")
    named = name is None or name.lower().endswith((setting.name, "_".join(words[1:]) or setting.name))
    return named and value == setting.default


def test_no_default_of_a_setting_is_written_again_elsewhere():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "pgkb" / "settings.py":
                continue
            for name, node in stage_defaults(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant):
                    found += [f"{path.relative_to(ROOT)}:{node.lineno} {name} = {node.value!r} ({setting.name})"
                              for setting in FIELDS.values() if repeats(name, node.value, setting)]
    assert found == [], "read these from Settings (pgkb.settings.default):\n" + "\n".join(found)


def test_the_check_finds_a_repeated_default():
    repeated = ast.parse("def load(batch_tokens: int = 16384, seconds=300.0):\n    pass\n"
                         "DEFAULT_MODEL = 'sentence-transformers/all-MiniLM-L6-v2'\n")
    assert sorted((name, setting.name) for name, node in stage_defaults(repeated) for setting in FIELDS.values()
                  if repeats(name, node.value, setting)) == [
        ("DEFAULT_MODEL", "model"), ("batch_tokens", "batch_tokens"), ("seconds", "parse_seconds")]


@pytest.mark.parametrize("command", COMMANDS)
def test_version(command, capsys):
    main, _, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"{command.split()[0]} {pgkb.__version__}\n"


@pytest.mark.parametrize("name, value, env", [("precision", "half", "PGKB_PRECISION"),
                                              ("pii_keys", "hide", "PGKB_PII_KEYS")])
def test_a_setting_of_fixed_values_refuses_others_naming_its_variable(name, value, env):
    with pytest.raises(ConfigurationError, match=f"{env} must be .* got '{value}' \\(setting {name}\\)"):
        Settings(**{name: value})
    with pytest.raises(ConfigurationError, match=env):
        Settings.from_env({env: value})


def test_a_flag_of_fixed_values_offers_them(capsys):
    with pytest.raises(SystemExit) as stopped:
        ingest_cli.main(["folder", "--pii-keys", "hide"])
    assert stopped.value.code == 2
    assert "invalid choice: 'hide' (choose from 'mask', 'keep')" in capsys.readouterr().err


def test_verbose_shows_the_traceback_of_a_pgkb_error(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert ingest_cli.main([missing, "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file or folder\n"
    assert ingest_cli.main([missing, "--data-dir", str(tmp_path), "-v"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "UsageError" in err
    assert err.endswith(f"error: {missing}: no such file or folder\n")
    assert search_cli.main(["query", "--where", "[1]", "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("error: --where takes a JSON object\n")


def test_any_other_error_is_not_caught(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest_cli, "ingest", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        ingest_cli.main([str(tmp_path), "--data-dir", str(tmp_path), "--quiet"])


def test_every_error_class_is_a_pgkb_error():
    control_flow = {"ingest.cli.Terminated", "ingest.parsers.pool.ParseInterrupted"}  # BaseExceptions, not errors
    errors = set()
    for package in PACKAGES:
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if module.name.endswith("__main__"):  # runs its command when imported
                continue
            for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__.split(".")[0] in PACKAGES:
                    errors.add(cls)
    named = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in errors}
    assert {"ingest.metadata.MetadataError", "retrieval.filters.FilterError", "embedding.server.ServerError",
            "ingest.pii.outputs.KeyCollision", "ingest.run.UsageError", "retrieval.evaluation.JudgmentsError",
            "embedding.models.ModelNotFound", "store.errors.SpaceMismatch"} <= named.keys()
    assert [name for name, cls in named.items() if not issubclass(cls, PgkbError) and name not in control_flow] == []
    assert issubclass(named["retrieval.filters.FilterError"], QueryError)
    assert issubclass(named["ingest.run.UsageError"], ConfigurationError)


def readme_defaults() -> dict[str, str | None]:
    """The README's configuration table: each variable's default as shown, when the default
    column starts with it in backquotes (one per variable where a row names several)."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    defaults: dict[str, str | None] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        variables, _, default = (cell.strip() for cell in line.split("|")[1:-1])
        shown = default.split("`")[1::2] if default.startswith("`") else []
        for i, variable in enumerate(v.strip(" `") for v in variables.split(",")):
            defaults[variable] = shown[i] if i < len(shown) else None
    return defaults


def test_the_readme_names_every_setting_and_shows_its_default():
    defaults = readme_defaults()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, setting in FIELDS.items():
        env, default = setting.metadata["env"], setting.default
        if env is None:
            continue
        assert env in readme, f"README does not name {env} (setting {name})"
        shown = defaults.get(env)
        if shown is None or shown.startswith("PGKB_") or isinstance(default, bool):
            continue
        if isinstance(default, (int, float, str)):
            assert shown == str(default), f"README shows {env}'s default as {shown!r}, Settings has {default!r}"
