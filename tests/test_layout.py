"""The house rules the code is checked against: imports run down the layers, a command module is
imported by no one, no import cycle, rooms of a readable size, one reader of a model folder's config."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"sard.train", "sard.export", "sard.evaluate", "sard.bench", "sard.checkpoint"}
# The paper's core imports nothing above it: nets, schedule, sampler.
CORE = {"sard.schedule": set(), "sard.rcd": {"sard.schedule"},
        "sard.nets": {"sard.nets", "sard.schedule"}}
PIPELINE_USERS = {"sard.synthesizers"} | COMMANDS     # the registry builds pipelines; commands may too
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 70


def modules() -> dict[str, Path]:
    found = {}
    for top in ("sard", "ui", "tools"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    found["app"] = ROOT / "app.py"
    return found


def imports(path: Path) -> set[str]:
    """Every module an import statement names (module-level, in functions, under TYPE_CHECKING too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def runtime_imports(path: Path) -> set[str]:
    """Imports that run (not those under `if TYPE_CHECKING:`), for the cycle check."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


MODS = modules()


def owned(name: str, known) -> str | None:
    """The project module an imported name belongs to (longest known prefix), or None."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def test_imports_run_down_the_layers():
    bad = []
    for mod, path in MODS.items():
        running = {owned(i, MODS) for i in runtime_imports(path)}
        for imp in imports(path):
            if mod.startswith(("sard", "ui")) and (imp == "app" or imp.startswith("app.")):
                bad.append(f"{mod} imports app")
            if mod.startswith("sard") and (imp == "ui" or imp.startswith("ui.") or imp.startswith("tools")):
                bad.append(f"library {mod} imports {imp}")
            target = owned(imp, MODS)
            if target in COMMANDS and target != mod and mod.startswith(("sard", "ui")):
                bad.append(f"{mod} imports the command module {target}")
            if target == "sard.pipeline" and target in running and mod.startswith(("sard", "ui")) \
                    and mod not in PIPELINE_USERS | {"sard.pipeline"}:
                bad.append(f"{mod} imports the pipeline (take a synthesizer from sard.synthesizers)")
            for core, allowed in CORE.items():
                if (mod == core or mod.startswith(core + ".")) and imp.startswith("sard") and target and \
                        not any(target == a or target.startswith(a + ".") for a in allowed | {core}):
                    bad.append(f"core module {mod} imports {target}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_no_import_cycle():
    graph = {m: {owned(i, MODS) for i in runtime_imports(p)} - {None, m} for m, p in MODS.items()}
    # a package's own __init__ importing its submodules is not a cycle of ideas
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycle.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycle, cycle[0]


@pytest.mark.parametrize("top", ["sard", "ui"])
def test_rooms_have_a_readable_size(top):
    long = []
    for path in sorted((ROOT / top).rglob("*.py")):
        src = path.read_text()
        if src.count("\n") > MAX_FILE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, "\n".join(long)


def test_a_model_folders_config_is_read_in_one_place():
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "sard").rglob("*.py")
               if "CONFIG_NAME" in p.read_text() and "read_config(" in p.read_text()]
    assert readers == ["sard/store/model_folder.py"], readers
