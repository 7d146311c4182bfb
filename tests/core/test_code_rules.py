"""Code habits enforced: small modules, thin function entry points."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open())


def test_modules_stay_under_the_hard_cap():
    big = {str(p.relative_to(ROOT)): _lines(p) for d in ("lib", "functions", "bench", "tests")
           for p in (ROOT / d).glob("**/*.py") if _lines(p) > 500}
    assert big == {}, f"modules over 500 lines (split them): {big}"


def test_function_modules_are_thin():
    fat = {p.name: _lines(p) for p in (ROOT / "functions").glob("*.py") if _lines(p) > 150}
    assert fat == {}, f"functions/*.py should verify, parse, call lib, respond: {fat}"


def test_vercel_entry_points_only_import_app():
    for p in (ROOT / "api").glob("*.py"):
        code = [l for l in p.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert len(code) == 1 and code[0].startswith("from functions.") and "import app" in code[0], \
            f"api/{p.name} must be a one-line re-export of a function module's app"
