"""Bundled presets load and validate; bad presets fail with errors that name the problem."""
from __future__ import annotations

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.presets import PresetError, available_presets, load_preset

ENGINES = ("vllm", "openai", "hf", "sglang", "trtllm")


@pytest.fixture(autouse=True)
def models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEEDBENCH_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("SPEEDBENCH_ENDPOINT", raising=False)
    return tmp_path / "models"


@pytest.mark.parametrize("name", available_presets())
def test_every_bundled_preset_loads_typed(name):
    preset = load_preset(name)
    assert preset["name"] == name and preset["engine"] in ENGINES
    assert preset["concurrency"] and all(isinstance(c, int) and c > 0 for c in preset["concurrency"])
    for drafter in preset["drafters"]:
        assert isinstance(drafter, DrafterSpec)
        assert DrafterSpec.parse(str(drafter)) == drafter  # what the record stores reads back the same


PRESET_PROBE = """
def test_probe(sb_settings):
    print("SETTINGS", sb_settings.engine, [d.id for d in sb_settings.drafters], sb_settings.concurrency,
          sb_settings.max_tokens, sb_settings.engine_args, sorted(sb_settings.explicit))
"""


def test_preset_values_reach_the_session_and_the_command_line_wins(pytester):
    pytester.makepyfile(test_probe=PRESET_PROBE)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--speedbench-preset", "embedded-hf")
    assert "SETTINGS hf ['none', 'ngram_k3_max3_min1', 'draft_k3_layers10'] (1,) 64 {'dtype': 'float32'}" in result.stdout.str()
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--speedbench-preset", "embedded-hf",
                                           "--speedbench-max-tokens", "8", "--speedbench-drafter", "none")
    assert "SETTINGS hf ['none'] (1,) 8 {'dtype': 'float32'}" in result.stdout.str()


def test_one_embedded_preset_per_engine():
    embedded = {load_preset(n)["engine"] for n in available_presets() if n.startswith("embedded-")}
    assert embedded == set(ENGINES)
    assert load_preset("embedded-vllm")["model"] is None  # "embedded" -> the suite's default model
    assert load_preset("embedded-openai")["endpoint"] == "http://127.0.0.1:8000"


def test_paper_configuration(models_dir):
    preset = load_preset("llama3.3-70b-eagle3-trtllm")
    assert preset["engine"] == "trtllm" and preset["concurrency"] == (32,)
    assert preset["engine_args"]["tensor_parallel_size"] == 8
    assert preset["model"] == f"{models_dir}/Llama-3.3-70B-Instruct"
    eagle = [d for d in preset["drafters"] if d.method == "eagle3"]
    assert eagle and eagle[0].k == 3 and eagle[0].model.startswith(str(models_dir))
    assert preset["temperature"] == 0 and preset["max_tokens"] == 4096


def test_unset_variable_is_named(monkeypatch):
    monkeypatch.delenv("SPEEDBENCH_MODELS")
    with pytest.raises(PresetError, match="SPEEDBENCH_MODELS is not set"):
        load_preset("gpt-oss-120b-eagle3-trtllm")


def test_unknown_name_lists_known():
    with pytest.raises(PresetError, match="not a bundled preset; known: .*embedded-hf"):
        load_preset("llama-9000")


def test_missing_file():
    with pytest.raises(PresetError, match="no such file"):
        load_preset("/nonexistent/preset.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("engine: vllm\ndrafters: [none]\nbatch: 4\n", "unknown key.*batch"),
        ("drafters: [none]\n", "missing required key.*engine"),
        ("engine: nosuch\ndrafters: [none]\n", "engine 'nosuch' is not registered"),
        ("engine: vllm\ndrafters: [warp:k=3]\n", "unknown method 'warp'"),
        ("engine: vllm\ndrafters: [none]\nconcurrency: [1, 0]\n", "concurrency must be a positive"),
        ("engine: vllm\ndrafters: [none]\nmax_tokens: many\n", "max_tokens must be int"),
        ("engine: vllm\ndrafters: []\n", "at least one drafter"),
        ("engine: openai\ndrafters: [none]\n", "needs an endpoint"),
        ("engine: vllm\ndrafters: [none]\nengine_args: [1]\n", "engine_args must be dict"),
        ("- just\n- a list\n", "YAML mapping"),
        ("engine: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_presets(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PresetError, match=message):
        load_preset(str(path))


def test_user_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("engine: hf\nmodel: embedded\ndrafters: ['ngram:k=2']\nconcurrency: 1\nengine_args: {dtype: float32}\n")
    preset = load_preset(str(path))
    assert preset == {"name": "mine", "engine": "hf", "model": None, "drafters": (DrafterSpec.parse("ngram:k=2"),),
                      "concurrency": (1,), "engine_args": {"dtype": "float32"}}
