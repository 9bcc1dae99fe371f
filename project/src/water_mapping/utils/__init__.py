"""Shared helpers that know nothing about water: data I/O under one base URL, and plots.

Put here what two or more subpackages need and that is not itself a modelling step.
"""
