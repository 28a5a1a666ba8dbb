"""Task records, scorers, the registry, the algorithmic generators, the single-token filter and the table."""

from string import ascii_lowercase

import pytest

from tv_lens.cli.tasks import format_task_table, task_table
from tv_lens.tasks import (
    Task,
    get_scorer,
    get_task,
    list_scorers,
    list_tasks,
    register_scorer,
    register_task,
    resolve_task,
    unregister_task,
)
from tv_lens.tasks.algorithmic import letter_lists

PAPER_ORDER = [
    "next_letter", "prev_letter", "list_first", "list_last", "to_upper", "to_lower",
    "fr_en", "es_en", "en_fr", "en_es",
    "present_gerund", "present_past", "plural_singular", "antonyms",
    "country_capital", "person_language", "location_continent", "person_religion",
]


class VocabTokenizer:
    """A greedy longest-match tokenizer over a fixed vocabulary, shaped like a HF tokenizer call."""

    def __init__(self, vocab):
        self.vocab = sorted(vocab, key=len, reverse=True)

    def _encode(self, text):
        ids = []
        while text:
            piece = next((v for v in self.vocab if text.startswith(v)), text[0])
            ids.append(hash(piece) % 100_000)
            text = text[len(piece):]
        return ids

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [self._encode(text) for text in texts]}


@pytest.fixture
def user_task():
    yield register_task("tiny_user_task", {"one": "1", "two": ["2", "II"]}, description="numbers")
    unregister_task("tiny_user_task")


# --- scorers ---------------------------------------------------------------------------------

def test_exact_scorer_strips_both_sides():
    exact = get_scorer("exact")
    assert exact(" going", ["going"])
    assert exact("going\n", [" going "])
    assert not exact("go", ["going"])
    assert not exact("Going", ["going"])


def test_prefix_scorer_accepts_prefixes_either_way_but_never_empty():
    prefix = get_scorer("prefix")
    assert prefix("Par", ["Paris"])
    assert prefix(" Paris", ["Paris"])
    assert prefix("Paris, France", ["Paris"])
    assert not prefix("Lyon", ["Paris"])
    assert not prefix("", ["Paris"])
    assert not prefix("   ", ["Paris"])


def test_any_of_scorer_accepts_every_synonym():
    any_of = get_scorer("any_of")
    assert any_of("tall", ["big", "tall", "large"])
    assert not any_of("huge", ["big", "tall", "large"])


def test_register_scorer_by_name_and_refuse_silent_replacement(monkeypatch):
    from tv_lens.tasks import scoring

    monkeypatch.setattr(scoring, "_SCORERS", dict(scoring._SCORERS))  # registered for this test only

    def casefold(prediction, answers):
        return any(prediction.strip().casefold() == a.strip().casefold() for a in answers)

    register_scorer("casefold_test", casefold)
    assert "casefold_test" in list_scorers()
    task = Task("cf", "custom", "", {"a": "B"}, scoring="casefold_test")
    assert task.score(" b", "a")
    with pytest.raises(ValueError, match="already exists"):
        register_scorer("casefold_test", get_scorer("exact"))


def test_unknown_scorer_lists_valid_names():
    with pytest.raises(ValueError, match="valid scorers: exact, prefix, any_of"):
        get_scorer("fuzzy")
    with pytest.raises(ValueError, match="unknown scorer"):
        Task("t", "custom", "", {"a": "b"}, scoring="fuzzy")


# --- Task ------------------------------------------------------------------------------------

def test_task_normalizes_outputs_to_tuples_with_canonical_first():
    task = Task("t", "custom", "", {"grand": ["big", "tall", "big"], "chat": "cat"})
    assert task.answers("grand") == ("big", "tall")
    assert task.canonical("grand") == "big"
    assert task.answers("chat") == ("cat",)
    assert task.inputs == ["chat", "grand"]
    assert len(task) == 2


def test_task_pairs_are_read_only():
    task = Task("t", "custom", "", {"a": "b"})
    with pytest.raises(TypeError):
        task.pairs["c"] = ("d",)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({}, "has no pairs"),
        ({"": "b"}, "input is empty"),
        ({"a": ""}, "is empty"),
        ({"a": []}, "has no output"),
        ({"a": 3}, "must be a string"),
        ({"a": [3]}, "must be a string"),
        ({3: "a"}, "must be a string"),
        ({" a": "b"}, "whitespace"),
        ({"a": "b\u2028c"}, "U\\+2028 \\(LINE SEPARATOR\\), a line break"),
        ({"a\rb": "c"}, "U\\+000D \\(CARRIAGE RETURN\\)"),
    ],
)
def test_task_rejects_bad_pairs(pairs, message):
    with pytest.raises(ValueError, match=message):
        Task("t", "custom", "", pairs)


def test_task_rejects_unknown_category():
    with pytest.raises(ValueError, match="unknown category 'misc'"):
        Task("t", "misc", "", {"a": "b"})


@pytest.mark.parametrize("category", ["algorithmic", "translation", "linguistic", "knowledge", "custom"])
def test_single_token_filter_defaults_by_scoring_whatever_the_category(category):
    pairs = {"a": "b"}
    assert Task("t", category, "", pairs).single_token_filter
    assert Task("t", category, "", pairs, scoring="any_of").single_token_filter
    assert not Task("t", category, "", pairs, scoring="prefix").single_token_filter
    assert not Task("t", category, "", pairs, single_token_filter=False).single_token_filter
    assert Task("t", category, "", pairs, scoring="prefix", single_token_filter=True).single_token_filter
    assert Task("t", category, "", pairs).leading_space is None


# --- registry --------------------------------------------------------------------------------

def test_list_tasks_gives_the_18_paper_tasks_in_order():
    assert list_tasks() == PAPER_ORDER


def test_get_task_builds_every_builtin_with_its_category_and_scorer():
    expected = {
        "algorithmic": ("exact", PAPER_ORDER[:6]),
        "translation": ("any_of", PAPER_ORDER[6:10]),
        "linguistic": ("exact", PAPER_ORDER[10:14]),
        "knowledge": ("prefix", PAPER_ORDER[14:]),
    }
    for category, (scoring, names) in expected.items():
        assert list_tasks(category) == names
        for name in names:
            task = get_task(name)
            assert (task.name, task.category, task.scoring) == (name, category, scoring)
            assert task.description


def test_get_task_caches_builtins():
    assert get_task("antonyms") is get_task("antonyms")


def test_unknown_task_is_one_line_listing_valid_names():
    with pytest.raises(ValueError) as error:
        get_task("capital_country")
    message = str(error.value)
    assert "\n" not in message
    assert "unknown task 'capital_country'" in message
    assert all(name in message for name in PAPER_ORDER)


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(ValueError, match="unknown task 'antonym'; did you mean 'antonyms'\\? valid tasks"):
        get_task("antonym")
    with pytest.raises(ValueError, match="unknown task 'zzz'; valid tasks"):
        get_task("zzz")


def test_a_name_with_an_unsupported_suffix_is_read_as_a_file(tmp_path):
    """Why: `--task past.txt` said "unknown task 'past.txt'" where the loader names the file types."""
    path = tmp_path / "past.txt"
    path.write_text('{"walk": "walked"}', encoding="utf-8")
    with pytest.raises(ValueError, match="past.txt: unsupported file type '.txt'; use one of .json, .jsonl, .csv"):
        resolve_task(str(path))
    with pytest.raises(ValueError, match="nothere.txt: no such file"):
        resolve_task(str(tmp_path / "nothere.txt"))


def test_register_task_from_pairs_is_listed_and_found(user_task):
    assert list_tasks()[-1] == "tiny_user_task"
    assert list_tasks("custom") == ["tiny_user_task"]
    assert get_task("tiny_user_task") is user_task
    assert user_task.answers("two") == ("2", "II")
    assert user_task.score("II", "two")


def test_register_task_refuses_existing_names_unless_overwrite(user_task):
    with pytest.raises(ValueError, match="already exists"):
        register_task("tiny_user_task", {"a": "b"})
    with pytest.raises(ValueError, match="already exists"):
        register_task("antonyms", {"a": "b"})
    replaced = register_task("tiny_user_task", {"a": "b"}, overwrite=True)
    assert get_task("tiny_user_task") is replaced


def test_register_task_accepts_a_task_object():
    task = Task("object_task", "knowledge", "d", {"France": "Paris"}, scoring="prefix")
    try:
        assert register_task(task) is task
        assert get_task("object_task").score("Par", "France")
    finally:
        unregister_task("object_task")
    assert "object_task" not in list_tasks()


def test_register_task_needs_pairs_for_a_name():
    with pytest.raises(ValueError, match="needs pairs"):
        register_task("no_pairs")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("no_pairs")


def test_overriding_a_builtin_keeps_its_place_and_unregister_restores_it():
    original = get_task("to_upper")
    register_task("to_upper", {"a": "A"}, overwrite=True)
    try:
        assert list_tasks() == PAPER_ORDER
        assert len(get_task("to_upper")) == 1
    finally:
        unregister_task("to_upper")
    assert get_task("to_upper") is original


# --- algorithmic tasks -----------------------------------------------------------------------

def test_letter_tasks():
    assert dict(get_task("next_letter").pairs) == {a: (b,) for a, b in zip(ascii_lowercase, ascii_lowercase[1:])}
    assert dict(get_task("prev_letter").pairs) == {b: (a,) for a, b in zip(ascii_lowercase, ascii_lowercase[1:])}
    assert dict(get_task("to_upper").pairs) == {a: (a.upper(),) for a in ascii_lowercase}
    assert dict(get_task("to_lower").pairs) == {a.upper(): (a,) for a in ascii_lowercase}


def test_letter_list_pool_is_fixed_and_well_formed():
    lists = letter_lists()
    assert lists == letter_lists()
    assert len(lists) == 1000
    assert len({",".join(letters) for letters in lists}) == 1000
    for letters in lists:
        assert 2 <= len(letters) <= 4
        assert len(set(letters)) == len(letters)
        assert all(letter in ascii_lowercase for letter in letters)
    assert {len(letters) for letters in lists} == {2, 3, 4}
    assert letter_lists(seed=1) != lists


def test_list_first_and_last_read_the_comma_separated_input():
    first, last = get_task("list_first"), get_task("list_last")
    assert list(first.pairs) == list(last.pairs)
    for query in first.inputs:
        letters = query.split(",")
        assert first.answers(query) == (letters[0],)
        assert last.answers(query) == (letters[-1],)


# --- single-token filter -----------------------------------------------------------------------

def test_filter_prefers_the_leading_space_variant_when_it_keeps_70_percent():
    tokenizer = VocabTokenizer(["->", " going", " eating", "going", "eating", " run"])
    task = Task("g", "linguistic", "", {"go": "going", "eat": "eating", "run": "running"})
    kept, report = task.filtered(tokenizer), task.filter_report(tokenizer)
    assert (report.total, report.single_token_a, report.single_token_b) == (3, 2, 2)
    assert report.applied and report.leading_space
    assert kept.leading_space and sorted(kept.pairs) == ["eat", "go"]
    assert task.filtered(tokenizer) == kept


def test_filter_keeps_variant_a_when_b_loses_too_much():
    tokenizer = VocabTokenizer(["->", "going", "eating", "running", " going"])
    task = Task("g", "linguistic", "", {"go": "going", "eat": "eating", "run": "running"})
    kept, report = task.filtered(tokenizer), task.filter_report(tokenizer)
    assert (report.single_token_a, report.single_token_b) == (3, 1)
    assert not report.leading_space and not kept.leading_space
    assert len(kept) == 3


def test_filter_rejects_outputs_that_merge_with_the_arrow():
    tokenizer = VocabTokenizer(["->", "->a", "a", "b", " a", " b"])
    task = Task("m", "linguistic", "", {"x": "a", "y": "b"})
    report = task.filter_report(tokenizer)
    assert report.single_token_a == 1
    assert report.single_token_b == 2


def test_filter_checks_only_the_canonical_output():
    tokenizer = VocabTokenizer(["->", " big", " tall"])
    task = Task("t", "translation", "", {"grand": ["big", "tall"], "haut": ["high", "tall"]})
    kept = task.filtered(tokenizer)
    assert dict(kept.pairs) == {"grand": ("big", "tall")}


def test_unfiltered_tasks_are_kept_whole_in_the_variant_the_rule_chooses():
    tokenizer = VocabTokenizer(["->", " Paris"])
    task = Task("k", "knowledge", "", {"France": "Paris", "Peru": "Lima"}, scoring="prefix")
    kept, report = task.filtered(tokenizer), task.filter_report(tokenizer)
    assert (report.applied, report.leading_space, report.variant, report.kept) == (False, True, "B", 2)
    assert (report.single_token_a, report.single_token_b) == (0, 1)
    assert kept == task.with_pairs(task.pairs, leading_space=True)
    fewer = VocabTokenizer(["->", " Paris", "Paris", "Lima"])
    assert not task.filter_report(fewer).leading_space


def test_a_fixed_variant_is_kept_and_preparing_twice_changes_nothing():
    tokenizer = VocabTokenizer(["->", "going", "eating", "running", " going", " eating"])
    task = Task("g", "linguistic", "", {"go": "going", "eat": "eating", "run": "running"})
    prepared = task.filtered(tokenizer)
    assert not prepared.leading_space and len(prepared) == 3
    assert prepared.filtered(tokenizer) == prepared
    fixed = task.with_pairs(task.pairs, leading_space=True)
    assert fixed.filtered(tokenizer).leading_space and sorted(fixed.filtered(tokenizer).pairs) == ["eat", "go"]


def test_no_single_token_answer_in_either_variant_gives_variant_a():
    report = Task("n", "knowledge", "", {"a": "bb"}, scoring="prefix").filter_report(VocabTokenizer(["->"]))
    assert (report.single_token_a, report.single_token_b, report.variant) == (0, 0, "A")


def test_first_token_exact_scoring_of_mostly_multi_token_answers_is_refused():
    tokenizer = VocabTokenizer(["->", " going"])
    task = Task("g", "custom", "", {"go": "going", "eat": "eating", "run": "running"}, single_token_filter=False)
    with pytest.raises(ValueError) as error:
        task.filtered(tokenizer)
    message = str(error.value)
    assert "\n" not in message and "2 of 3 answers are several tokens" in message
    for fix in ("single_token_filter=True", "scoring='prefix'", "tv.generate"):
        assert fix in message
    with pytest.raises(ValueError, match="several tokens"):
        Task("g", "custom", "", dict(task.pairs), scoring="any_of").filtered(tokenizer, single_token_filter=False)
    assert len(task.with_pairs(task.pairs, scoring="prefix").filtered(tokenizer)) == 3
    assert len(task.filtered(tokenizer, single_token_filter=True)) == 1
    half = Task("h", "custom", "", {"go": "going", "eat": "eating"}, single_token_filter=False)
    assert len(half.filtered(tokenizer)) == 2


def test_filter_that_keeps_nothing_says_so():
    task = Task("n", "translation", "", {"a": "bb"})
    assert task.filter_report(VocabTokenizer(["->"])).kept == 0
    with pytest.raises(ValueError, match="no answer is a single token .*scoring='prefix'"):
        task.filtered(VocabTokenizer(["->"]))


# --- table -------------------------------------------------------------------------------------

def test_task_table_without_tokenizer_lists_every_task():
    rows = task_table()
    compound = ["list_first_upper", "list_last_upper", "list_first_next", "list_last_next"]
    assert [row.name for row in rows] == PAPER_ORDER + compound
    assert all(row.kept is None for row in rows)
    text = format_task_table(rows)
    assert text.splitlines()[0].split() == ["task", "category", "scoring", "pairs", "description"]
    assert len(text.splitlines()) == 1 + 18 + 4


def test_task_table_with_tokenizer_has_counts():
    rows = {row.name: row for row in task_table(VocabTokenizer(["->", " b", "b", "c"]))}
    assert (rows["next_letter"].single_token_a, rows["next_letter"].single_token_b) == (25, 1)
    assert rows["next_letter"].kept == 25 and rows["next_letter"].filtered and rows["next_letter"].variant == "A"
    assert rows["antonyms"].filtered and not rows["country_capital"].filtered
    text = format_task_table(list(rows.values()))
    assert text.splitlines()[0].split() == ["task", "category", "scoring", "pairs", "1-tok", "A", "1-tok", "B",
                                            "filter", "variant", "kept"]


def test_filtered_follows_the_tasks_own_setting_unless_overridden():
    tokenizer = VocabTokenizer(["->", " Paris"])
    knowledge = Task("k", "knowledge", "", {"France": "Paris", "Peru": "Lima"}, scoring="prefix")
    assert dict(knowledge.filtered(tokenizer).pairs) == dict(knowledge.pairs)
    forced = knowledge.filtered(tokenizer, single_token_filter=True)
    assert dict(forced.pairs) == {"France": ("Paris",)} and forced.leading_space and forced.single_token_filter
    linguistic = Task("g", "linguistic", "", {"go": "going", "eat": "eating"})
    assert len(linguistic.filtered(VocabTokenizer(["->", " going"]), single_token_filter=False)) == 2
