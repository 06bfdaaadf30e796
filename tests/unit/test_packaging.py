"""The project's set-up files agree with each other and with the rules of the repository."""

import json
import re
import tomllib

import yaml

from latencylab.core import paths

ROOT = paths.PROJECT_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_declares_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_names = {_name(d): d for d in conda} | {"pip": "pip", "python": "python"}
    missing = sorted(set(declared) - set(conda_names))
    extra = sorted(set(conda_names) - set(declared) - {"pip", "python", "cmake", "cxx-compiler"})
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"
    for name, requirement in declared.items():
        assert conda_names[name].replace(" ", "") == requirement.replace(" ", ""), name
    assert pip_section == ["-e .[engine,dev]"], "environment.yml must end with pip: -e .[engine,dev]"


def test_notebooks_have_one_tagged_parameters_cell_of_annotated_literals_and_no_outputs():
    import ast

    for notebook in sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, notebook.name
        for statement in ast.parse("".join(tagged[0]["source"])).body:
            assert isinstance(statement, ast.AnnAssign), f"{notebook.name}: parameters must be annotated"
            ast.literal_eval(statement.value)  # literals only
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, f"{notebook.name}: strip outputs"
    assert {p.name for p in paths.NOTEBOOKS_DIR.glob("*.ipynb")} >= {"1.0-collect.ipynb", "2.0-latency-report.ipynb"}


def test_ci_runs_exactly_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    lines = [s for s in (ROOT / ".ci" / "run").read_text().splitlines() if s and not s.startswith("#")]
    assert lines[-1] == "make test"
