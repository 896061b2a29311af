"""Official-format loaders (COCO Karpathy captions, VQAv2, LLaVA conversations) and collators.

Only file formats live here: whatever writes those files (the synthetic world, a download script)
is somewhere else, so real COCO and the embedded demo take the same path from the files on.
"""
