"""Where aipic's data files are: inside the installed package (a wheel), or in the repository (a checkout).

The repository keeps ``models/`` and ``audits/`` at its top level; pyproject.toml maps them into the package as
``aipic._data.models`` and ``aipic._data.audits``, so a non-editable install carries them.
"""

import importlib.util
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DATA_DIRS = ("models", "audits")


def data_dir(name: str) -> Path:
    """The folder of ``models`` or ``audits`` data."""
    try:
        spec = importlib.util.find_spec(f"aipic._data.{name}")
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    return REPO_ROOT / name


def data_file(path: str | Path) -> Path:
    """A path as given if it exists, else the same relative path inside aipic's data (``audits/suites/x.yaml``)."""
    path = Path(path)
    if path.exists() or path.is_absolute() or len(path.parts) < 2 or path.parts[0] not in DATA_DIRS:
        return path
    return data_dir(path.parts[0]) / Path(*path.parts[1:])


def suite_names() -> list[str]:
    """The packaged prompt suites, by name (``audits/suites/<name>.yaml``)."""
    return sorted(path.stem for path in (data_dir("audits") / "suites").glob("*.yaml"))


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (``prompts:`` twice would silently drop a list)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    """Parse YAML data with the safe loader, refusing duplicated keys."""
    return yaml.load(text, Loader=UniqueKeyLoader)
