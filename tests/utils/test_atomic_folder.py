"""Cache folders are published whole: the first writer wins, a later one is discarded, a failed one leaves nothing."""

import pytest

from embedding_trainer.utils.atomic_folder import building


def test_a_folder_appears_whole_and_a_second_writer_is_discarded(tmp_path):
    folder = tmp_path / "cache" / "key"
    with building(folder) as partial:
        (partial / "data.txt").write_text("first")
        assert not folder.exists()  # nothing visible until it is complete
    with building(folder) as partial:  # another process that built the same folder meanwhile
        (partial / "data.txt").write_text("second")
    assert (folder / "data.txt").read_text() == "first"
    assert [path.name for path in folder.parent.iterdir()] == ["key"]


def test_a_failed_build_publishes_nothing(tmp_path):
    folder = tmp_path / "key"
    with pytest.raises(RuntimeError), building(folder) as partial:
        (partial / "data.txt").write_text("half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
