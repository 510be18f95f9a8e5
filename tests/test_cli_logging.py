"""Only rank 0 of a distributed run logs at INFO: the rank as the launchers set it."""
import pytest

from nanodet_ghost.cli import process_rank

RANK_VARIABLES = ("RANK", "NODE_RANK", "LOCAL_RANK")


@pytest.mark.parametrize("env, rank", [
    ({}, 0),
    ({"RANK": "0", "LOCAL_RANK": "0"}, 0),
    ({"RANK": "3", "LOCAL_RANK": "1"}, 3),  # torchrun
    ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, 1),  # Lightning's DDP launcher, second process
    ({"LOCAL_RANK": "0", "NODE_RANK": "2"}, 1),  # first process of a later node
    ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, 0),
])
def test_process_rank(env, rank, monkeypatch):
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert process_rank() == rank
