"""Function vectors: the file format they share with task vectors."""

import json

import pytest
import torch

from tv_lens.vectors import FUNCTION_VECTOR, TASK_VECTOR, TaskVector, VectorFileError


def test_kind_and_heads_round_trip_and_default_to_a_task_vector(tmp_path):
    fv = TaskVector(torch.randn(3, 8), layer=1, kind=FUNCTION_VECTOR, heads=[[1, 2, 0.25], [0, 3, 0.125]])
    back = TaskVector.load(fv.save(tmp_path / "fv.safetensors"))
    assert back.kind == FUNCTION_VECTOR and back.heads == [[1, 2, 0.25], [0, 3, 0.125]]
    assert torch.equal(back.vectors, fv.vectors) and "function vector" in back.summary()
    assert TaskVector(torch.zeros(3, 8)).kind == TASK_VECTOR


def test_an_unknown_kind_is_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    meta = {**TaskVector(torch.zeros(2, 4)).metadata(), "kind": "steering_vector"}
    path = tmp_path / "odd.safetensors"
    save_file({"vectors": torch.zeros(2, 4)}, str(path), metadata={"format": "pt", "tv_lens": json.dumps(meta)})
    with pytest.raises(VectorFileError, match="'kind' is 'steering_vector', not one of") as info:
        TaskVector.load(path)
    assert "\n" not in str(info.value)
