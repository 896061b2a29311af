"""Planning a study before it runs: what each job of a sweep trains, how much GPU memory it needs
and how long it takes on a given card, from shapes alone (meta device) and the throughput that
`make bench-gpu` measured. Nothing here loads weights or data (`ptpeft plan`, docs/reproduce.md)."""
