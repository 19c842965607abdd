"""Where records come from: the proxy in front of the model server, or a tailed request log."""

from driftgauge.sources.tail import TailSource, parse_timestamp

__all__ = ["TailSource", "parse_timestamp"]
