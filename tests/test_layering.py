"""The three layers import downwards only: data <- gan (the model) <- gan.training (Lightning wiring)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"data": 0, "gan": 1, "gan.training": 2}  # a module may import from its own layer and those below


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    if module.endswith(".__main__"):
        return "gan.training"  # an entry point wires the layers together, as train.py does: the top layer
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module named by an import statement of ``path`` (top level or inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(p for folder in ("data", "gan") for p in (ROOT / folder).rglob("*.py"))


def test_every_import_points_down_or_sideways():
    upward = []
    for path in SOURCES:
        own = layer_of(module_name(path))
        for line, target in imports_of(path):
            other = layer_of(target)
            if other is not None and LAYERS[other] > LAYERS[own]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target} ({other})")
    assert not upward, "\n".join(upward)


def test_only_the_training_layer_imports_lightning():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {target}"
                 for path in SOURCES if layer_of(module_name(path)) != "gan.training"
                 for line, target in imports_of(path) if target.split(".")[0] in ("pytorch_lightning", "lightning")]
    assert not offenders, "\n".join(offenders)


def test_the_rule_sees_an_upward_import(tmp_path):
    """The walker finds imports inside functions too (where cycles used to hide)."""
    source = tmp_path / "m.py"
    source.write_text("import torch\n\ndef f():\n    from gan.training.module import DeepPrivacyGAN\n")
    assert (4, "gan.training.module") in imports_of(source)
    assert layer_of("gan.training.module") == "gan.training" and layer_of("gan.export") == "gan"


DATA_MODULES = sorted(module_name(p) for p in (ROOT / "data").rglob("*.py") if p.name != "annotate.py")
FORBIDDEN = ("gan", "pytorch_lightning", "torch.onnx", "safetensors", "onnx")


def test_data_modules_load_no_model():
    """In one fresh interpreter, importing the data modules one by one: none loads a gan module, Lightning or
    the exporter (annotate.py needs MediaPipe, which the toolkit never installs)."""
    code = (
        "import importlib, sys, json\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "loaded = {}\n"
        f"for name in {DATA_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    inside = tuple(f + '.' for f in forbidden)\n"
        "    bad = sorted(m for m in sys.modules if m in forbidden or m.startswith(inside))\n"
        "    if bad:\n"
        "        loaded[name] = bad\n"
        "        break\n"
        "print(json.dumps(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}, f"the first data module to load the model: {result.stdout}"
    assert "data.record" in DATA_MODULES and "data.detections" in DATA_MODULES


def test_importing_the_record_loads_no_discriminator():
    code = "import sys, data.record, gan\nprint(sorted(m for m in sys.modules if m.startswith('gan.')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_model_package_loads_lazily():
    import gan

    assert gan.Generator.__module__ == "gan.generator"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gan.nothing  # noqa: B018
