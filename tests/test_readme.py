"""The README documents every flag of every command, its layout section names every module, and every
local link of the documents resolves."""
import re

import pytest

from conftest import REPO, run_module

COMMANDS = [("app", []), ("sard.train", []), ("sard.export", []), ("sard.export", ["--write-bank", "x"]),
            ("sard.evaluate", ["realism"]), ("sard.evaluate", ["card"]), ("sard.evaluate", ["segmentation"]),
            ("sard.evaluate", ["dprobe"]), ("sard.bench", [])]
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("module,args", COMMANDS, ids=[" ".join([m, *a]) for m, a in COMMANDS])
def test_every_flag_of_every_command_is_in_the_readme(module, args):
    r = run_module(module, *args, "--help", timeout=120)
    assert r.returncode == 0, r.stderr
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", r.stdout)) - {"--help"}
    assert flags, r.stdout
    missing = sorted(f for f in flags if not re.search(rf"(?<![\w-]){f}(?![\w-])", README))
    assert not missing, f"python -m {module} {' '.join(args)}: undocumented flags {missing}"


def test_the_layout_section_names_every_module():
    layout = README[README.index("## Layout"):]
    names = {p.stem if p.name != "__init__.py" else p.parent.name
             for top in ("sard", "ui", "tools") for p in (REPO / top).rglob("*.py")} - {"__init__"}
    missing = sorted(n for n in names if not re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", layout))
    assert not missing, f"modules the README's layout does not name: {missing}"


def test_every_local_link_and_picture_of_the_documents_exists():
    """A report copied under another name keeps pointing at its own picture (a broken ![...](...)
    shows nothing where people would rather look than read)."""
    docs = [REPO / "README.md", *(p for d in ("docs", "reports", "checkpoints") for p in (REPO / d).rglob("*.md"))]
    broken = [f"{p.relative_to(REPO)}: {t}" for p in docs
              for t in re.findall(r"\]\(([^)#\s]+)\)", p.read_text()) if not t.startswith(("http:", "https:"))
              and not (p.parent / t).exists()]
    assert not broken, broken
