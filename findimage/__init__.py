"""findimage core: configuration, image preparation, embedders, stores and search.

Shared by the Slack bot (`bot/`) and the archive indexer (`indexer/`); never imports Slack.
"""
