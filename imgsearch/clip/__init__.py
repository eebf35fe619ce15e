"""What CLIP can do beyond ranking: zero-shot tags, few-shot albums, evaluation, explanations.

Label sets and template sets are data files (labels/, templates/). Modules: sets (reading
them), zeroshot (classifiers), tags, albums, evaluate, explain. Nothing here imports torch at
module level.
"""
