"""The public surface of smtpkit.contrib.templates, and what `import smtpkit` avoids."""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys

from smtpkit.contrib import templates


def test_all_is_sorted_complete_and_public():
    # RUF022's order: constants, then classes, then functions.
    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert templates.__all__ == sorted(templates.__all__, key=order)
    public = {
        name
        for name, value in vars(templates).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public - set(templates.__all__) == {"annotations"}


def test_classes_live_in_the_public_module():
    for name in templates.__all__:
        value = getattr(templates, name)
        if isinstance(value, type):
            assert value.__module__ == "smtpkit.contrib.templates", name
    error = templates.TemplateRenderError("x", index=1)
    assert "smtpkit.contrib.templates" in repr(type(error))
    assert pickle.loads(pickle.dumps(error)).index == 1  # noqa: S301 - our own bytes


def test_import_smtpkit_imports_no_template_engine():
    code = (
        "import sys, smtpkit, smtpkit.testing, smtpkit.contrib; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'jinja2', 'css_inline', 'markupsafe'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
