"""Chunks in a store: where band tasks put them (`sink.py`), shard files (`shardfile.py`), raw
shards written in place (`inplace.py`), the streaming shard writer (`spool.py`), and reading a
pyramid back (`dataset.py`, sharded scales through `shardreader.py`)."""
