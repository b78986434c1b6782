"""Speed, memory and size of artifacts, measured side by side (`edgeincep bench`)."""
from edgeincep.bench.latency import interleaved_latency

__all__ = ["interleaved_latency"]
