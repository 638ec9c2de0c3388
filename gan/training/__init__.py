"""Training wiring, the top layer: the LightningModule, the scheduled DataModule, callbacks and the CLI.

It may import ``gan`` (the model) and ``data``; nothing below imports it.
"""
