"""A model placed by accelerate, some layers offloaded to disk, gives the results of the same model on one
device: the same θ, the same predictions with θ applied, the same layer sweep, the same generations and
the same top tokens of θ."""

import pytest
import torch
from test_core import max_rel

from tv_lens.analysis.lens import top_tokens
from tv_lens.models.loading import ModelLoadError, layer_device_map, load_model
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.sweep import layer_sweep


def check_placed_model_gives_the_same_results(whole, placed, demos, dummies, queries, answers):
    thetas = [learn(m, demos, dummies=dummies) for m in (whole, placed)]
    assert thetas[1].vectors.device.type == "cpu"
    assert max_rel(thetas[1].vectors, thetas[0].vectors) < 1e-5
    layers = range(whole.cfg.n_layers)
    predictions = [apply(m, theta, queries, layer=layer) for m, theta in zip((whole, placed), thetas)
                   for layer in layers]
    assert predictions[:len(layers)] == predictions[len(layers):]
    prompts = [f"{q}->" for q in queries]
    sweeps = [layer_sweep(m, prompts, [t.vectors] * len(queries), lambda i, p: p.strip() == answers[i])
              for m, t in zip((whole, placed), thetas)]
    assert sweeps[0] == sweeps[1]
    layer = max(layers, key=lambda L: sweeps[0][0][L].value)
    texts = [generate(m, t, queries, layer=layer, max_new_tokens=4) for m, t in zip((whole, placed), thetas)]
    assert texts[0] == texts[1]
    assert top_tokens(placed, thetas[1].at(layer), k=5).ids == top_tokens(whole, thetas[0].at(layer), k=5).ids
    return predictions[:len(layers)]


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_a_tiny_model_with_layers_on_disk_gives_the_results_of_one_device(kind, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    whole = load_model(kind, device="cpu")
    device_map = layer_device_map(kind, lambda layer, n: "disk" if layer >= n // 2 else "cpu")
    placed = load_model(kind, device_map=device_map, offload_folder=tmp_path / "offload")
    assert set(placed.original_model.hf_device_map.values()) == {"cpu", "disk"}
    check_placed_model_gives_the_same_results(whole, placed, [("ab", "c"), ("de", "f"), ("gh", "i")],
                                              ["jk", "lm"], ["no", "pq", "r"], ["p", "r", "s"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="fewer than two CUDA devices")
def test_a_tiny_model_over_two_gpus_gives_the_results_of_one_device(tmp_path, monkeypatch):
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    whole = load_model("tiny-llama", device="cpu")
    placed = load_model("tiny-llama", device_map=layer_device_map("tiny-llama", lambda layer, n: int(layer >= n // 2),
                                                                  rest=0))
    check_placed_model_gives_the_same_results(whole, placed, [("ab", "c"), ("de", "f"), ("gh", "i")],
                                              ["jk", "lm"], ["no", "pq", "r"], ["p", "r", "s"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_gpu_with_layers_offloaded_to_the_cpu_is_refused_in_one_line(tmp_path, monkeypatch):
    """TransformerLens 4.3 refuses device maps that mix a GPU with CPU or disk offload."""
    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="could not place") as err:
        load_model("tiny-llama", device_map=layer_device_map("tiny-llama", lambda layer, n: "cpu", rest=0))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_the_embedded_model_with_layers_on_disk_gives_the_results_of_the_normal_load(gemma, tmp_path, one_thread):
    """A memory limit smaller than the model makes accelerate offload its last layers to disk."""
    placed = load_model("gemma-3-270m", device_map="auto", max_memory={"cpu": "1400MiB"},
                        offload_folder=tmp_path)
    assert "disk" in set(placed.original_model.hf_device_map.values())
    demos = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("wet", "dry"), ("old", "young")]
    predictions = check_placed_model_gives_the_same_results(
        gemma, placed, demos, ["up", "happy"], ["high", "light"], ["low", "dark"])
    assert predictions[9] == ["low", "dark"]


def test_the_commands_take_the_placement_options(tmp_path, monkeypatch, capsys, one_thread):
    from tv_lens.cli.main import main
    from tv_lens.task_vectors.vector import TaskVector

    monkeypatch.setenv("TV_LENS_CACHE", str(tmp_path / "cache"))
    offloaded = ["--device-map", "auto", "--max-memory", "cpu=300KB", "--offload-folder", str(tmp_path / "offload")]
    learned = []
    for options in ([], offloaded):
        path = tmp_path / f"v{len(learned)}.safetensors"
        assert main(["learn", "--task", "next_letter", "--model", "tiny-llama", "--k", "2", "--n-dev", "4",
                     "--out", str(path), *options]) == 0
        learned.append(TaskVector.load(path))
    assert learned[0].layer == learned[1].layer
    assert max_rel(learned[1].vectors, learned[0].vectors) < 1e-5
    capsys.readouterr()
    answers = []
    for options in ([], offloaded, ["--dtype", "bfloat16", "--force"]):
        assert main(["apply", str(tmp_path / "v0.safetensors"), "a", "b", "c", *options]) == 0
        answers.append(capsys.readouterr().out.splitlines()[-3:])
    assert answers[0] == answers[1] and len(answers[2]) == 3
    assert main(["apply", str(tmp_path / "v0.safetensors"), "a", "--dtype", "bfloat16"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["cpu", "=1GiB", "0=", "cpu:1GiB"])
def test_a_malformed_memory_budget_is_a_one_line_error(text):
    from tv_lens.cli.options import parse_max_memory

    with pytest.raises(ValueError, match="DEVICE=AMOUNT"):
        parse_max_memory(text)


def test_a_memory_budget_names_gpus_by_index():
    from tv_lens.cli.options import parse_max_memory

    assert parse_max_memory("0=20GiB, 1=20GiB,cpu=60GiB") == {0: "20GiB", 1: "20GiB", "cpu": "60GiB"}


@pytest.mark.parametrize("argv, default", [
    (["learn", "--task", "next_letter", "--out", "v.safetensors"], "gemma-3-270m"),
    (["apply", "v.safetensors", "a"], None),
    (["fv", "--task", "next_letter"], "gemma-3-270m"),
    (["evaluate", "--task", "next_letter"], "gemma-3-270m"),
    (["reproduce"], "gemma-3-270m"),
])
def test_every_command_that_loads_a_model_takes_the_model_and_placement_options(argv, default):
    from analyses.commands import add_commands
    from tv_lens.cli.main import build_parser
    from tv_lens.cli.options import placement

    parser = build_parser((add_commands,))
    assert parser.parse_args(argv).model == default
    args = parser.parse_args([*argv, "--model", "tiny-llama", "--device", "cpu", "--dtype", "bfloat16"])
    assert args.model == "tiny-llama"
    assert placement(args)["device"] == "cpu" and placement(args)["dtype"] == torch.bfloat16
