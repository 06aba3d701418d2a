"""What a run's owner sends out to the cluster's other nodes (parley/cluster/_relay.py)."""

from __future__ import annotations

from parley.cluster._relay import coalesced
from parley.events import ChunkEvent, Event, MessageEvent


def chunk(source: str, text: str, turn: int = 1) -> tuple[Event, int | None]:
    return ChunkEvent(source=source, content=text, turn=turn), None


def test_pieces_that_piled_up_go_out_as_one_per_message_in_order() -> None:
    """Under load, the pieces of a message streamed while the last batch went out reach watchers as one piece:
    the same text in the same order, and nothing else is merged or moved."""
    done = MessageEvent(source="writer", content="Draft one.", turn=1)
    batch = [
        chunk("writer", "Dra"),
        chunk("writer", "ft "),
        chunk("reviewer", "Hm", turn=2),  # another speaker's piece splits the run
        chunk("writer", "one."),
        (done, 7),
        chunk("writer", "Next", turn=3),  # the same speaker's next turn is a message of its own
        chunk("writer", " turn", turn=3),
        chunk("writer", "!", turn=4),
    ]
    out = coalesced(batch)
    assert [(type(e).__name__, e.source, e.turn, e.content, seq) for e, seq in out] == [
        ("ChunkEvent", "writer", 1, "Draft ", None),
        ("ChunkEvent", "reviewer", 2, "Hm", None),
        ("ChunkEvent", "writer", 1, "one.", None),
        ("MessageEvent", "writer", 1, "Draft one.", 7),
        ("ChunkEvent", "writer", 3, "Next turn", None),
        ("ChunkEvent", "writer", 4, "!", None),
    ]
    assert out[3][0] is done
    assert coalesced([]) == []
