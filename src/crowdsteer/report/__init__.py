"""Plots and the HTML report; they read saved results only."""
