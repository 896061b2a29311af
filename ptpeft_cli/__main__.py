"""`python -m ptpeft_cli ...` (e.g. under torchrun) is the same CLI as `ptpeft ...`."""

from ptpeft_cli.cli import main

main()
