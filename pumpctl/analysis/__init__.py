"""Analyses of what a pump delivered: gravimetric accuracy (trumpet curves) and run reports."""
