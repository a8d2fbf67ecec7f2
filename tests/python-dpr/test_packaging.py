"""python-dpr as a Python distribution (python-dpr/pyproject.toml,
docs/packaging.md): mypy with the project's configuration finds no type
error in the package (and does find one put in a copy of it, so the check
can fail); a pip install of the source tree yields a distribution that
importlib.metadata sees, with the tree's version (debian/changelog), the
py.typed marker and the dprctl entry point."""
import os
import shutil
import subprocess

import pytest

from dprtest import PYDIR, PYTHON, ROOT

PYPROJECT = os.path.join(PYDIR, "pyproject.toml")


def _changelog_version():
    with open(os.path.join(ROOT, "debian", "changelog"), encoding="utf-8") as f:
        first = f.readline()
    return first[first.index("(") + 1:first.index(")")]


def _mypy(pydir, cache):
    if subprocess.run([PYTHON, "-c", "import mypy"], capture_output=True).returncode:
        pytest.fail("needs mypy (Debian package mypy: make deps)", pytrace=False)
    return subprocess.run([PYTHON, "-m", "mypy", "--config-file",
                           os.path.join(pydir, "pyproject.toml"), "--cache-dir", cache,
                           os.path.join(pydir, "dpr")],
                          capture_output=True, text=True, timeout=600, cwd=pydir)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One cache for the module's mypy runs (the standard library's types
    are most of the work)."""
    return str(tmp_path_factory.mktemp("mypy-cache"))


def test_mypy_finds_no_type_error(mypy_cache):
    r = _mypy(PYDIR, mypy_cache)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout


def test_mypy_fails_on_a_type_error_and_a_missing_annotation(tmp_path, mypy_cache):
    copy = tmp_path / "python-dpr"
    shutil.copytree(PYDIR, copy, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                               "*.egg-info"))
    with open(copy / "dpr" / "route.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _bad() -> int:\n    return shard_of(b'k', 'two')\n"
                "\n\ndef _untyped(x):\n    return x\n")
    # the command line is checked as the library is (no module is exempt)
    with open(copy / "dpr" / "cli.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _bad_cli() -> str:\n    return _yn('no')\n"
                "\n\ndef _untyped_cli(args):\n    return args\n")
    r = _mypy(str(copy), mypy_cache)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'incompatible type "str"; expected "int"' in r.stdout
    assert "missing a type annotation" in r.stdout
    cli = [line for line in r.stdout.splitlines() if line.startswith("dpr/cli.py:")]
    assert any('"_yn" has incompatible type "str"; expected "bool"' in line
               for line in cli), r.stdout
    assert any("missing a type annotation" in line for line in cli), r.stdout


def test_pip_install_yields_a_distribution(tmp_path):
    # a copy of the tree's python-dpr and debian/changelog: the build
    # writes build/ and *.egg-info next to pyproject.toml
    src = tmp_path / "src"
    shutil.copytree(PYDIR, src / "python-dpr", ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info"))
    (src / "debian").mkdir()
    shutil.copy(os.path.join(ROOT, "debian", "changelog"), src / "debian" / "changelog")
    target = tmp_path / "site"
    r = subprocess.run([PYTHON, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--no-index", "--no-cache-dir", "--disable-pip-version-check",
                        "--target", str(target), str(src / "python-dpr")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    version = _changelog_version()
    assert (target / "dpr" / "py.typed").exists()
    assert (target / "dpr" / "url.py").exists()
    probe = ("import importlib.metadata as m, dpr\n"
             "d = m.distribution('dpr-cluster')\n"
             "print(d.version, dpr.__version__, dpr.__file__)\n"
             "print([e.value for e in d.entry_points if e.name == 'dprctl'])\n"
             "print(d.metadata['License'])\n"
             "print(sorted(d.requires or []))\n")
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    dist_version, pkg_version, pkg_file = lines[0].split()
    assert dist_version == version and pkg_version == version
    assert pkg_file == str(target / "dpr" / "__init__.py")
    assert lines[1] == "['dpr.cli:main']"
    assert "no license grant" in lines[2]
    assert "'hiredis'" in lines[3]
    # the installed dprctl runs from the installed package
    r = subprocess.run([str(target / "bin" / "dprctl"), "--help"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0 and "usage: dprctl" in r.stdout, r.stdout + r.stderr


def test_the_package_version_is_the_trees():
    import dpr
    assert dpr.__version__ == _changelog_version()
