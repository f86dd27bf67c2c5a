"""README's configuration lists every THERACHARGE_* setting the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_the_code_names_is_in_the_readme() -> None:
    named = set()
    for path in [*ROOT.glob("plugin/**/*.py"), *ROOT.glob("fhir_mappings/**/*.py")]:
        named |= set(re.findall(r"THERACHARGE_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert named
    assert sorted(n for n in named if n not in readme) == []
