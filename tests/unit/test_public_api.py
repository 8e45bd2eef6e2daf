"""The public surface: exports, module names, version and the typing marker."""

from __future__ import annotations

import importlib.metadata
import inspect
from pathlib import Path

import pytest

import smtpkit
import smtpkit.auth
import smtpkit.testing


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 enforces (ruff check runs on src): SCREAMING_CASE
    # constants, then CamelCase classes, then everything else, each alphabetical.
    if name.isupper():
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("module", [smtpkit, smtpkit.auth, smtpkit.testing])
def test_all_is_sorted(module):
    assert module.__all__ == sorted(module.__all__, key=_isort_key)
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("module", [smtpkit, smtpkit.auth, smtpkit.testing])
def test_every_exported_name_exists(module):
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.parametrize(
    ("module", "helpers"),
    [
        (smtpkit, {"PackageNotFoundError", "version"}),
        (smtpkit.auth, set()),
        (smtpkit.testing, {"RetryPolicy", "SMTPReply"}),
    ],
)
def test_all_is_complete(module, helpers):
    """Every public-looking name is exported, except the module's own imports."""
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public - set(module.__all__) == helpers | {"annotations"}


@pytest.mark.parametrize("name", smtpkit.__all__)
def test_public_classes_live_in_smtpkit(name):
    value = getattr(smtpkit, name)
    if isinstance(value, type) and not hasattr(value, "__origin__"):
        expected = "smtpkit.auth" if name in smtpkit.auth.__all__ else "smtpkit"
        assert value.__module__ == expected


@pytest.mark.parametrize("name", smtpkit.auth.__all__)
def test_auth_classes_live_in_smtpkit_auth(name):
    value = getattr(smtpkit.auth, name)
    # typing aliases (Responder, TokenProvider) count as types on Python 3.10.
    if isinstance(value, type) and not hasattr(value, "__origin__"):
        assert value.__module__ == "smtpkit.auth"


def test_auth_module_contents():
    assert set(smtpkit.auth.__all__) == {
        "DEFAULT_REFRESH_AHEAD",
        "AccessToken",
        "CachedTokenProvider",
        "Auth",
        "CramMD5Auth",
        "LoginAuth",
        "OAuthBearerAuth",
        "PlainAuth",
        "Responder",
        "TokenProvider",
        "XOAuth2Auth",
    }
    assert smtpkit.auth is smtpkit.__dict__["auth"]


def test_testing_module_contents():
    assert set(smtpkit.testing.__all__) >= {
        "ConsoleTransport",
        "FakeTransport",
        "FileTransport",
        "SentMessage",
        "no_wait",
        "reply",
    }
    assert smtpkit.testing.__all__ == sorted(smtpkit.testing.__all__)
    assert issubclass(smtpkit.testing.FakeTransport, smtpkit.Transport)


def test_version_matches_metadata():
    assert smtpkit.__version__ == importlib.metadata.version("pysmtpkit")


def test_distribution_is_pysmtpkit_and_registers_the_plugin():
    """``smtpkit`` on the index is another project: ours is published as pysmtpkit."""
    dist = importlib.metadata.distribution("pysmtpkit")
    assert dist.metadata["Name"] == "pysmtpkit"
    [plugin] = [ep for ep in dist.entry_points if ep.group == "pytest11"]
    assert (plugin.name, plugin.value) == ("smtpkit", "smtpkit.pytest_plugin")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("smtpkit")  # the unrelated one must not be here


def test_py_typed_shipped():
    package_dir = Path(smtpkit.__file__).parent
    assert (package_dir / "py.typed").is_file()


def test_contrib_celery_surface():
    """smtpkit.contrib.celery: a sorted, complete ``__all__`` of existing names."""
    celery_contrib = pytest.importorskip("smtpkit.contrib.celery")
    names = celery_contrib.__all__
    assert names == sorted(names, key=_isort_key)
    assert all(hasattr(celery_contrib, name) for name in names)
    public = {
        name
        for name, value in vars(celery_contrib).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public - set(names) == {"annotations"}
