"""What `make install` and the package ship besides the programs (install.mk,
docs/packaging.md): the man pages in man/ say what the programs' --help says
(every option, both ways), agent.conf(5) names every setting of
conf/agent.conf, and dprctl's bash completion
(python-dpr/completion/dprctl, run in bash with bash-completion) offers
dprctl's commands, options and choices as dpr/cli.py defines them."""
import argparse
import os
import re
import subprocess

import pytest

from dpr import cli

from dprtest import BUILD_DIR, DPRCTL, PYDIR, PYTHON, ROOT

MAN = os.path.join(ROOT, "man")
COMPLETION = os.path.join(ROOT, "python-dpr", "completion", "dprctl")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def man_text(name):
    """The page's text with roff's escapes and font changes gone."""
    with open(os.path.join(MAN, name), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"\\f[BIRP]", "", text).replace("\\-", "-").replace("\\(aq", "'")
    return text


def long_options(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def help_text(program):
    path = os.path.join(BUILD_DIR, program)
    if not os.path.exists(path):
        pytest.skip("needs %s (make)" % path)
    r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


@pytest.mark.parametrize("program", ["dpr-agent", "dpr-kv", "dpr-finder", "dpr-redis"])
def test_man_page_lists_the_options_of_help(program):
    page = man_text(program + ".8")
    options = page.split(".SH OPTIONS", 1)[1].split(".SH ", 1)[0]
    want = long_options(help_text(program))
    assert want, program
    assert want == long_options(options), (want ^ long_options(options))


def subcommands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def test_dprctl_man_page_lists_every_command_and_option():
    page = man_text("dprctl.1")
    parser, cmds = subcommands()
    for o in (o for a in parser._actions for o in a.option_strings):
        assert o in page.split(".SH COMMANDS", 1)[0], o
    for name, p in cmds.items():
        assert re.search(r"^\.B %s\b" % re.escape(name), page, re.M), name
        for a in p._actions:
            for o in a.option_strings:
                assert o in page, (name, o)


def changelog_version():
    with open(os.path.join(ROOT, "debian", "changelog"), encoding="utf-8") as f:
        return re.match(r"dpr-cluster \(([^)]+)\) ", f.readline()).group(1)


@pytest.mark.parametrize("program", ["dpr-agent", "dpr-kv", "dpr-finder", "dprctl"])
def test_version_is_the_one_of_debian_changelog(program):
    if program == "dprctl":
        argv = [PYTHON, DPRCTL]
    else:
        help_text(program)  # skips without the build
        argv = [os.path.join(BUILD_DIR, program)]
    r = subprocess.run(argv + ["--version"], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, PYTHONPATH=PYDIR))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s %s\n" % (program, changelog_version())


def test_agent_conf_page_names_every_setting():
    with open(os.path.join(ROOT, "conf", "agent.conf"), encoding="utf-8") as f:
        conf = f.read()
    names = set(re.findall(r"^[ #]*([a-z_]+) = ", conf, re.M))
    assert {"cluster", "node", "address", "impls", "raft", "peers", "max_input_bytes"} <= names
    page = man_text("agent.conf.5")
    missing = sorted(n for n in names if not re.search(r"(?<![\w.])%s\b" % n, page))
    assert not missing, missing


def complete(*words):
    """COMPREPLY of dprctl's completion for the command line `dprctl WORDS`
    (the last word is the one being completed)."""
    if not os.path.exists(BASH_COMPLETION):
        pytest.skip("needs bash-completion (make deps)")
    words = ("dprctl",) + words
    script = ('source %s; source %s; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); '
              '_dprctl dprctl "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"; '
              'printf "%%s\\n" "${COMPREPLY[@]}"' % (BASH_COMPLETION, COMPLETION))
    r = subprocess.run(["bash", "-c", script, "bash"] + list(words), capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_completion_offers_the_commands_and_their_options():
    parser, cmds = subcommands()
    assert complete("") == set(cmds)
    assert complete("ro") == {"rollout"}
    top = {o for a in parser._actions for o in a.option_strings}
    assert complete("-") == top
    for name, p in cmds.items():
        opts = {o for a in p._actions for o in a.option_strings}
        assert complete(name, "-") == opts, name
        choices = [a.choices for a in p._actions if not a.option_strings and a.choices]
        if choices:
            assert complete(name, "") == set(choices[0]), name
    # after a global option and its value
    assert complete("--socket", "/run/dpr/agent.sock", "st") == {"status"}
    assert complete("discover", "-o", "") == {"table", "json"}


def test_completion_completes_spec_files(tmp_path):
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "b.txt").write_text("")
    got = complete("apply", "-f", str(tmp_path) + "/")
    assert str(tmp_path / "a.yaml") in got and str(tmp_path / "b.txt") not in got
