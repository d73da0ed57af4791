"""The indexer: protocol events into SQL (docs/indexer.md)."""
