"""The Elasticsearch store and everything else findimage keeps in Elasticsearch."""
