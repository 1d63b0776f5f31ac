"""The package layers depend in one direction, lowest first; every import counts, lazy ones
inside functions and TYPE_CHECKING ones included, and no modules import each other in a
circle. A new module must be given its layer here."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vad", "streams", "models", "reasoning", "dashboard")

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS = [
    ("core", ["vad", "vad.types", "vad.errors", "vad.config", "vad.config.patrol",
              "vad.registry", "vad.evidence", "vad.metrics", "vad.postprocess", "vad.plots",
              "vad.snapshots", "vad.urls", "vad.durable"]),
    ("streams", ["streams"]),
    ("data", ["vad.data", "vad.data.patrol", "vad.data.patrol_synth"]),
    ("models", ["models", "models.patrol"]),
    ("reasoning", ["reasoning"]),
    ("engine parts", ["vad.events", "vad.fusion", "vad.stores", "vad.outputs", "vad.clips"]),
    ("pipeline", ["vad.pipeline"]),
    ("services", ["vad.serve", "vad.evaluation", "vad.weak_eval", "vad.cameras", "vad.vane",
                  "vad.patrol", "vad.workers"]),
    ("app", ["vad.commands", "vad.cli", "dashboard", "vad.commands.patrol"]),
]


def layer_of(module: str) -> int:
    best, rank = "", None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, index
    assert rank is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return rank


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, module: str, eager_only: bool = False) -> set[str]:
    """Project modules `path` imports (`from a import b` counts `a.b` when that is a module)."""
    tree = ast.parse(path.read_text())
    known = modules()
    nodes = tree.body if eager_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES and name != module:
                out.add(name)
    return out


def test_every_import_goes_to_the_same_or_a_lower_layer():
    violations = []
    for module, path in sorted(modules().items()):
        for target in imports(path, module):
            if layer_of(target) > layer_of(module) and not module.startswith(target + "."):
                violations.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                                  f"({LAYERS[layer_of(target)][0]})")
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_no_modules_import_each_other_in_a_circle():
    graph = {m: {t for t in imports(p, m, eager_only=True) if not m.startswith(t + ".")}
             for m, p in modules().items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in graph.get(node, ()):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # The check itself must be able to fail: a core module importing the pipeline.
    bad = tmp_path / "vad" / "types.py"
    bad.parent.mkdir()
    bad.write_text("from vad.pipeline import Pipeline\n")
    assert "vad.pipeline" in imports(bad, "vad.types")
    assert layer_of("vad.pipeline") > layer_of("vad.types")


def test_vad_help_imports_neither_torch_nor_opencv():
    code = ("import sys, contextlib, io\n"
            "from vad.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'cv2', 'transformers', 'kafka', 'streamlit') "
            "if m in sys.modules]\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.strip() == ""
