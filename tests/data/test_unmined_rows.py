"""The rows mining gave no negatives (`unmined_rows`): found by their (anchor, positive) pair, kept with
seeded negatives that are never a positive of their anchor, or left out when too few documents remain."""

import datasets

from embedding_trainer.data.unmined_rows import unmined, with_drawn_negatives, with_unmined_rows

ROWS = datasets.Dataset.from_dict(
    {
        "anchor": ["q1", "q1", "q1", "q2", "q2", "q3"],
        "positive": ["p1", "p2", "p3", "p4", "p4", "p1"],
    }
)
CORPUS = [f"d{number}" for number in range(20)]


def test_unmined_rows_are_the_pairs_mining_left_out_each_once_in_order():
    mined = ROWS.select([0, 5])
    assert unmined(ROWS, mined).to_list() == [
        {"anchor": "q1", "positive": "p2"},
        {"anchor": "q1", "positive": "p3"},
        {"anchor": "q2", "positive": "p4"},
    ]


def test_drawn_negatives_are_seeded_and_never_a_positive_of_the_anchor():
    drawn = with_drawn_negatives(ROWS, ROWS, CORPUS, 3, seed=1)
    assert drawn.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert drawn.to_list() == with_drawn_negatives(ROWS, ROWS, CORPUS, 3, seed=1).to_list()
    assert drawn.to_list() != with_drawn_negatives(ROWS, ROWS, CORPUS, 3, seed=2).to_list()
    own = {"q1": {"p1", "p2", "p3"}, "q2": {"p4"}, "q3": {"p1"}}
    for row in drawn:
        negatives = {row[f"negative_{number}"] for number in (1, 2, 3)}
        assert len(negatives) == 3 and not negatives & own[row["anchor"]]
        assert negatives <= set(CORPUS) | {"p1", "p2", "p3", "p4"}


def test_rows_with_too_few_other_documents_are_left_out():
    # Without a corpus the documents are p1..p4: q1 has three of them as positives, q2 and q3 one.
    drawn = with_drawn_negatives(ROWS, ROWS, None, 2, seed=0)
    assert set(drawn["anchor"]) == {"q2", "q3"} and len(drawn) == 3
    for row in drawn:
        assert {row["negative_1"], row["negative_2"]} <= {"p1", "p2", "p3", "p4"} - {row["positive"]}


def test_sampled_rows_follow_the_mined_ones_with_empty_scores():
    mined = ROWS.select([0]).add_column("negative_1", ["p4"]).add_column("scores", [[0.9, 0.5]])
    kept, missing = with_unmined_rows(ROWS, mined, "sampled", CORPUS, seed=0)
    assert missing == 4 and len(kept) == 5 and kept[0] == mined[0]
    assert kept["scores"][1:] == [[]] * 4 and kept.features == mined.features
    dropped, missing = with_unmined_rows(ROWS, mined, "drop", CORPUS, seed=0)
    assert missing == 4 and dropped.to_list() == mined.to_list()
