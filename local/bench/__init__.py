"""`make bench`: performance figures for lead push on this machine, each next to its aim."""
