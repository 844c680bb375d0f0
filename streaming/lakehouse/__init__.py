"""The Spark and Hudi runtime: tables and their timeline, the stream's checkpoint and source log."""
