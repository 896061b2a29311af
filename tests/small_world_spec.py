"""The small synthetic world the session fixture writes (a module, so tests can import its sizes)."""

from ptpeft_cli.synthetic.writer import WorldSpec

SMALL_SPEC = WorldSpec(seed=3, n_pretrain=50, n_train=20, n_val=5, n_test=5)
