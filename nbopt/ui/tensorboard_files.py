"""TensorBoard's file format, written directly: event files, HParams and text summaries.

Events are written synchronously with TensorBoard's own record format and protocol buffers:
this needs neither torch nor TensorFlow, and it adds no thread per run as a ``SummaryWriter``
does. What a trial costs is mostly the file system's: a new directory and event file. HParams
records go in each trial's own run (``SummaryWriter.add_hparams`` would create a new run per
call).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any


class EventFile:
    """An append-only TensorBoard event file for one run directory, written synchronously."""

    _counter = 0

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        os.makedirs(directory, exist_ok=True)
        EventFile._counter += 1
        name = (
            f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}."
            f"{os.getpid()}.{EventFile._counter}"
        )
        self._file = open(Path(directory) / name, "wb")  # noqa: SIM115 - closed in close()
        self._writer = RecordWriter(self._file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]
        )
        self.summary(summary, step)

    def summary(self, summary: Any, step: int = 0) -> None:
        self._write(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())


def hparams_start(params: dict[str, Any], group: str) -> Any:
    """The HParams plugin's session-start summary for a trial with ``params``."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=time.time())
    for name, value in params.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = float(value)
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        elif value is not None:
            start.hparams[name].string_value = repr(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
    return summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=metadata.SESSION_START_INFO_TAG,
                metadata=metadata.create_summary_metadata(data),
            )
        ]
    )


def hparams_end(success: bool) -> Any:
    """The HParams plugin's session-end summary: the session succeeded or failed."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    code = api_pb2.STATUS_SUCCESS if success else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=end)
    return summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG,
                metadata=metadata.create_summary_metadata(data),
            )
        ]
    )


def text_summary(tag: str, text: str) -> Any:
    """A summary that TensorBoard's Text tab shows (Markdown)."""
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
    )
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        string_val=[text.encode()],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]
        ),
    )
    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)]
    )
