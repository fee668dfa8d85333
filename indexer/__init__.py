"""Archive indexer: scans the shared image folder and keeps the store's embeddings current."""
