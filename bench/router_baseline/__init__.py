"""Router classifiers shipped before the current one: the blind baselines.

``complexity_v1``: the keyword model; ``complexity_v2``: the softmax over the
MiniLM embedding, measurements and keywords (shipped at commit ca4b34e).
"""
