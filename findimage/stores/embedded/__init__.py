"""The default store: SQLite as the truth, a faiss kNN cache, path words in FTS5."""
