"""Streaming shards: ``mmformer prepare`` writes them, the DataModules read them (``shards=``)."""
