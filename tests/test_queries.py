"""Queries from users: a bare string, empty queries and queries over the model's limit."""

import pytest

from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.queries import QueryTooLongError
from tv_lens.task_vectors.serving import TaskVectorSolver


@pytest.fixture
def theta(tiny_llama):
    return learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)


def test_a_bare_string_is_a_type_error(tiny_llama, theta):
    for answer in (lambda q: apply(tiny_llama, theta, q), lambda q: generate(tiny_llama, theta, q),
                   TaskVectorSolver(tiny_llama, theta)):
        with pytest.raises(TypeError, match=r"not one string: write \['hot'\]"):
            answer("hot")


def test_empty_and_blank_queries_are_refused(tiny_llama, theta):
    for queries, pattern in (([], "no queries"), (["ab", ""], "query 1 is empty"), (["  \t"], "query 0 is empty"),
                             (["ab", 3], "query 1 is a int")):
        error = TypeError if "int" in pattern else ValueError
        with pytest.raises(error, match=pattern):
            apply(tiny_llama, theta, queries)
        with pytest.raises(error, match=pattern):
            generate(tiny_llama, theta, queries)


def test_a_query_over_the_limit_is_reported_alone_and_the_others_are_answered(tiny_llama, theta):
    limit = tiny_llama.cfg.n_ctx
    long = "a" * limit
    queries = ["kl", long, "m"]
    for answer, room, expected in ((lambda q: apply(tiny_llama, theta, q), 0, apply(tiny_llama, theta, ["kl", "m"])),
                                   (lambda q: generate(tiny_llama, theta, q, max_new_tokens=3), 3,
                                    generate(tiny_llama, theta, ["kl", "m"], max_new_tokens=3))):
        with pytest.raises(QueryTooLongError) as err:
            answer(queries)
        n_tokens = len(tiny_llama.to_tokens(f"example:{long}->", truncate=False)[0])
        assert err.value.too_long == [(1, n_tokens)] and err.value.limit == limit and err.value.room == room
        assert err.value.answers == [expected[0], None, expected[1]]
        assert f"query 1 has {n_tokens} tokens" in str(err.value) and f"limit of {limit}" in str(err.value)
        assert "\n" not in str(err.value)
    fits = "a" * (limit - len(tiny_llama.to_tokens("example:->")[0]))  # the prompt fills the limit exactly
    assert len(tiny_llama.to_tokens(f"example:{fits}->")[0]) == limit
    assert len(apply(tiny_llama, theta, [fits])) == 1
    with pytest.raises(QueryTooLongError, match="plus 1 to generate"):
        generate(tiny_llama, theta, [fits], max_new_tokens=1)
