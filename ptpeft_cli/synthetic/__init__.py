"""The embedded demo: a synthetic image world written in the official COCO / VQAv2 formats, and
the pre-training of the tiny LMM that ships with ptpeft.

Nothing in the product layers (data, models, methods, training, evaluation) imports this package:
they read the files it writes like any other official-format data. It plugs in through one
registry line (`task.dataset.kind=synthetic`) and the `ptpeft pretrain` command.
"""
