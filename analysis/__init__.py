"""servesweep analysis: read result files, join with cost, find the cheapest Config within the SLO."""
