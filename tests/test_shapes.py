"""The tests run with jaxtyping shapes checked (the import hook of conftest.py): a tensor of the wrong
rank is refused at the call, before the function body runs."""

import pytest
import torch
from jaxtyping import TypeCheckError

from tv_lens.analysis.geometry import cosine_distances


def test_a_wrong_shape_is_refused_at_the_call():
    assert cosine_distances(torch.eye(3)).shape == (3, 3)
    with pytest.raises(TypeCheckError, match="vectors"):
        cosine_distances(torch.zeros(2, 3, 4))
