"""Read TensorBoard event files back without TensorBoard: TFRecord framing (length, CRC, record, CRC) around
tensorboardX's `Event` protobuf. For tests that check what a logger wrote."""
from __future__ import annotations

import struct
from pathlib import Path


def scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """{tag: {global step: value}} of every scalar in the event files of one run folder."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, dict[int, float]] = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            record = data[pos + 12:pos + 12 + length]
            pos += 12 + length + 4
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return out
