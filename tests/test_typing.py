"""The public API type-checks as documented, under three checkers.

Every ``python`` and ``py`` block of README.md and docs/ is written to a file of its
own, and those files plus tests/typing/ are checked by mypy --strict without the
pydantic plugin, mypy --strict with it, and pyright in strict mode.  tests/typing/
api.py uses ``assert_type`` on results; tests/typing/bad_calls.py holds calls that
must be refused (each with a ``# type: ignore[code]`` that the checkers report when
it is not needed).  The checkers' caches live in .mypy_cache/ (git-ignored).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest

import smtpkit
from smtpkit import (
    Attachment,
    Envelope,
    Message,
    PoolLimits,
    RateLimit,
    RetryPolicy,
    SMTPConfig,
    SMTPConfigFields,
    _config,
    _message,
    _ratelimit,
    _retry,
    _token_cache,
)
from smtpkit._transports import _failover_config
from smtpkit.auth import AccessToken

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"
STUBS = TYPING / "stubs"
CACHE = ROOT / ".mypy_cache"


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _doc_blocks() -> dict[str, str]:
    """Return ``{file name: source}`` for every python/py block of the docs."""
    docs = _load(ROOT / "tests" / "test_docs.py", "_smtpkit_test_docs_blocks")
    files = {}
    for block in docs.ALL_BLOCKS:
        if block.info in ("python", "py"):
            where = block.path.relative_to(ROOT).with_suffix("").as_posix()
            name = re.sub(r"\W", "_", f"{where}_{block.line}") + ".py"
            files[name] = block.source
    return files


@pytest.fixture(scope="module")
def blocks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("doc_blocks")
    for name, source in _doc_blocks().items():
        (directory / name).write_text(source, encoding="utf-8")
    return directory


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def _checked_files(blocks: Path) -> list[str]:
    """The doc blocks and tests/typing/*.py (the stubs only support them)."""
    return [
        str(p) for p in (*sorted(blocks.glob("*.py")), *sorted(TYPING.glob("*.py")))
    ]


def _mypy(blocks: Path, tmp_path: Path, *, plugin: bool) -> None:
    lines = [
        "[mypy]",
        "strict = True",
        "warn_unreachable = True",
        "enable_error_code = ignore-without-code",
        f"mypy_path = {STUBS}",
        f"cache_dir = {CACHE / ('typing-plugin' if plugin else 'typing-plain')}",
    ]
    if plugin:
        lines.append("plugins = pydantic.mypy")
    config = tmp_path / "mypy.ini"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = _run("mypy", "--config-file", str(config), *_checked_files(blocks))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.lint
@pytest.mark.timeout(300)
def test_mypy_strict_without_pydantic_plugin(blocks_dir: Path, tmp_path: Path) -> None:
    _mypy(blocks_dir, tmp_path, plugin=False)


@pytest.mark.lint
@pytest.mark.timeout(300)
def test_mypy_strict_with_pydantic_plugin(blocks_dir: Path, tmp_path: Path) -> None:
    _mypy(blocks_dir, tmp_path, plugin=True)


@pytest.mark.lint
@pytest.mark.timeout(300)
def test_pyright_strict(blocks_dir: Path, tmp_path: Path) -> None:
    config = {
        "stubPath": str(STUBS),
        "typeCheckingMode": "strict",
        "reportUnnecessaryTypeIgnoreComment": "error",
        # msal is represented by a stub only; its absence is not the docs' fault.
        "reportMissingModuleSource": "none",
    }
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
    proc = _run(
        "pyright",
        *("--project", str(tmp_path / "pyrightconfig.json")),
        *("--pythonpath", sys.executable, "--outputjson"),
        *_checked_files(blocks_dir),
    )
    report = json.loads(proc.stdout)
    problems = [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d["severity"] in ("error", "warning")
    ]
    assert problems == [], "\n".join(problems)
    assert report["summary"]["filesAnalyzed"] >= len(_doc_blocks()) + 2


def test_every_bad_call_also_fails_at_run_time() -> None:
    """What the checkers refuse in bad_calls.py, validation refuses too."""
    bad = _load(TYPING / "bad_calls.py", "_smtpkit_typing_bad_calls")
    calls: dict[str, Callable[[], None]] = {
        name: function
        for name, function in vars(bad).items()
        if name.startswith("bad_")
    }
    assert len(calls) >= 20
    for name, call in calls.items():
        try:
            call()
        except (TypeError, pydantic.ValidationError):
            continue
        pytest.fail(f"{name}() was accepted")


# The constructor signatures for the checkers are written under TYPE_CHECKING, next
# to the fields.  Nothing at run time reads them, so these tests keep them in step
# with the fields: a new field without a parameter would type-check as an error.
# smtpkit/__init__.py sets __module__ = "smtpkit" on exports, so name the modules.
MODELS: dict[type[pydantic.BaseModel], types.ModuleType] = {
    Attachment: _message,
    Envelope: _message,
    Message: _message,
    PoolLimits: _config,
    RateLimit: _ratelimit,
    RetryPolicy: _retry,
    SMTPConfig: _config,
    smtpkit.FailoverConfig: _failover_config,
    AccessToken: _token_cache,
}


def _static_init(model: type[pydantic.BaseModel]) -> ast.FunctionDef:
    tree = ast.parse(inspect.getsource(MODELS[model]))
    [cls] = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == model.__name__
    ]
    for node in cls.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            [init] = [n for n in node.body if isinstance(n, ast.FunctionDef)]
            return init
    raise AssertionError(f"{model.__name__} has no __init__ under TYPE_CHECKING")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_static_init_matches_the_fields(model: type[pydantic.BaseModel]) -> None:
    init = _static_init(model)
    args = init.args
    params = [a.arg for a in (*args.args[1:], *args.kwonlyargs)]
    assert params == list(model.model_fields), "same names, same order"
    defaults = dict(
        zip(
            [a.arg for a in args.args[1:]][::-1],
            args.defaults[::-1],
            strict=False,
        )
    )
    defaults.update(
        {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d}
    )
    namespace = vars(MODELS[model])
    for name, field in model.model_fields.items():
        assert (name not in defaults) == field.is_required(), name
        if name in defaults and ast.unparse(defaults[name]) != "...":
            static = eval(ast.unparse(defaults[name]), namespace)  # noqa: S307
            assert static == field.get_default(call_default_factory=True), name


def test_config_fields_typed_dict_lists_every_field() -> None:
    assert list(SMTPConfigFields.__annotations__) == list(SMTPConfig.model_fields)
    assert not SMTPConfigFields.__required_keys__


def test_public_aliases_are_exported() -> None:
    assert smtpkit.AddressLike == smtpkit.Address | str | tuple[str, str]
    assert "TLSModeLike" in smtpkit.__all__
    assert "SMTPConfigFields" in smtpkit.__all__
