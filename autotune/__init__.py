"""How choices are made: the study, the cost model, the records database, CLI and export."""
