import pytest

from latencylab.study import StudyError, load_study, parse_study, with_base_url

MINIMAL = {"name": "s", "scenarios": [{"name": "a", "model": "m"}]}


def test_shipped_demo_study_is_valid():
    spec, raw = load_study("embedded-demo")
    assert spec.name == raw["name"] == "embedded-demo"
    assert spec.uses_engine and len(spec.scenarios) == 2


def test_defaults_fill_a_minimal_study():
    spec = parse_study(MINIMAL)
    assert spec.backend == "embedded" and spec.workload.requests == 20 and spec.workload.unique_prefix


def test_unknown_key_suggests_the_right_one():
    data = {**MINIMAL, "workload": {"reqests": 3}}
    with pytest.raises(StudyError, match=r"f.yaml: workload.reqests: unknown key; did you mean 'requests'\?"):
        parse_study(data, "f.yaml")


def test_wrong_type_names_the_key_path_and_value():
    data = {**MINIMAL, "scenarios": [{"name": "a", "model": "m", "keep_alive": [1]}, {"name": "b"}]}
    with pytest.raises(StudyError) as err:
        parse_study(data, "f.yaml")
    text = str(err.value)
    assert "f.yaml: scenarios[0].keep_alive" in text
    assert "f.yaml: scenarios[1].model: Field required" in text


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"workload": {"requests": -1}}, "workload.requests: Input should be greater than or equal to 1"),
        ({"base_url": "ftp://x"}, "base_url: String should match pattern"),
        ({"backend": "ollama"}, "needs a base_url"),
        ({"backend": "tgi"}, "backend: Input should be 'embedded', 'ollama', 'openai' or 'llamacpp'"),
        ({"scenarios": [{"name": "a", "model": "m"}, {"name": "a", "model": "n"}]}, "repeated: a"),
        ({"scenarios": []}, "scenarios: List should have at least 1 item"),
    ],
)
def test_invalid_values_are_explained(change, expected):
    with pytest.raises(StudyError, match=expected.replace("(", r"\(")):
        parse_study({**MINIMAL, **change}, "f.yaml")


def test_yaml_errors_and_missing_files_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyError, match="bad.yaml: not valid YAML"):
        load_study(bad)
    with pytest.raises(StudyError, match="no study file 'nope'; shipped studies: .*embedded-demo"):
        load_study("nope")
    with pytest.raises(StudyError, match="a study must be a YAML mapping"):
        parse_study(["a"])


def test_base_url_override_is_validated():
    spec = parse_study({**MINIMAL, "backend": "ollama", "base_url": "http://a:1"})
    assert with_base_url(spec, "http://localhost:11434").base_url == "http://localhost:11434"
    with pytest.raises(StudyError, match="--base-url: base_url"):
        with_base_url(spec, "localhost:11434")
