"""One micro-batch, the stream around it, re-reads, metrics: the exactly-once path."""
