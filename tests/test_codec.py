"""Records read back from JSON by their field types: each check gives a one-line error naming the field."""

import json
import math
from dataclasses import dataclass, field

import pytest

from tv_lens.codec import NOT_STORED, Fraction, Layer, PerLayer, Record, ResultsError
from tv_lens.stats import Accuracy


@dataclass(frozen=True)
class Curve(Record):
    name: str
    layer: Layer
    by_layer: PerLayer[Fraction]
    accuracy: Accuracy
    top: list[tuple[Layer, int, float]]
    extra: dict[str, float | None]
    cache: object = field(default=None, metadata=NOT_STORED)


GOOD = {"name": "a", "layer": 1, "by_layer": [0.5, None, 1], "accuracy": Accuracy(1, 2).to_dict(),
        "top": [[0, 1, 0.25]], "extra": {"x": 2.0, "y": None}}


def test_a_record_reads_back_what_it_wrote_with_null_as_nan():
    curve = Curve.from_dict(GOOD, n_layers=3)
    assert curve.layer == 1 and math.isnan(curve.by_layer[1]) and curve.by_layer[2] == 1
    assert curve.accuracy == Accuracy(1, 2) and curve.top == [(0, 1, 0.25)] and curve.extra["y"] is None
    written = json.loads(json.dumps(curve.to_dict()).replace("NaN", "null"))
    assert written == GOOD and list(written) == list(GOOD) and "cache" not in written


@pytest.mark.parametrize("change, says", [
    ({"layer": 3}, "layer: layer 3 out of range: the model has layers 0..2"),
    ({"layer": True}, "layer: expected an integer, got bool"),
    ({"by_layer": [0.5, 0.5]}, "by_layer: expected one entry per layer (3), got 2"),
    ({"by_layer": [0.5, 1.5, 0]}, "by_layer[1]: expected a fraction in [0, 1], got 1.5"),
    ({"by_layer": "x"}, "by_layer: expected a list, got str"),
    ({"accuracy": {**GOOD["accuracy"], "correct": 3}}, "accuracy: 3 correct out of 2 is impossible"),
    ({"accuracy": {**GOOD["accuracy"], "value": "half"}}, "accuracy.value: expected a number, got str"),
    ({"accuracy": {"correct": 1, "total": 2}}, "accuracy: missing field 'value'"),
    ({"top": [[0, 1]]}, "top[0]: expected 3 entries, got 2"),
    ({"top": [[5, 1, 0.1]]}, "top[0][0]: layer 5 out of range"),
    ({"extra": {"x": "1"}}, "extra.x: expected a number, got str"),
    ({"name": 1}, "name: expected str, got int"),
    ({"more": 1}, "top level: unexpected field 'more'"),
])
def test_each_check_is_a_one_line_error_naming_the_field(change, says):
    with pytest.raises(ResultsError) as info:
        Curve.from_dict({**GOOD, **change}, n_layers=3)
    assert str(info.value).startswith(says) and "\n" not in str(info.value)


def test_without_the_models_depth_layers_are_not_range_checked():
    assert Curve.from_dict({**GOOD, "layer": 7, "by_layer": [0.5]}).layer == 7
    with pytest.raises(ResultsError, match="missing field 'name'"):
        Curve.from_dict({k: v for k, v in GOOD.items() if k != "name"})
