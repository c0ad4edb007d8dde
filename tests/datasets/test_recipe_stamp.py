"""The synthetic writers share one stamp rule: idempotent, never replacing data not theirs."""
import pytest

from mmdynup.datasets import write_synthetic_ade


def test_ade_writer_is_idempotent_and_refuses_other_data(tmp_path):
    root = tmp_path / 'ade'
    arguments = dict(num_train=2, num_val=1, size=48, seed=0)
    assert write_synthetic_ade(root, **arguments) == {'training': 2, 'validation': 1}
    written = {path: path.stat().st_mtime_ns for path in root.rglob('*.png')}
    write_synthetic_ade(root, **arguments)  # same recipe: nothing is rewritten
    assert {path: path.stat().st_mtime_ns for path in root.rglob('*.png')} == written
    with pytest.raises(FileExistsError, match='other arguments'):
        write_synthetic_ade(root, **dict(arguments, seed=1))
    assert write_synthetic_ade(root, **dict(arguments, seed=1), overwrite=True)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'mine.txt').write_text('not a synthetic set')
    with pytest.raises(FileExistsError, match='not a synthetic set'):
        write_synthetic_ade(foreign, **arguments)
    assert (foreign / 'mine.txt').read_text() == 'not a synthetic set'
